/**
 * Read CIFAR-10 samples from what users have: the ImageFolder layout
 * (`<split>/<class>/NNNN.jpg`) as a folder or a .tar.gz, or the official binary release
 * (`cifar-10-binary.tar.gz` or its `cifar-10-batches-bin/` folder). Labels follow the
 * official class order, never the file system's. Same formats as
 * models/splitfleet_models/data.py. With a model's own labels, any ImageFolder
 * (folder.ts).
 */
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import type { RgbImage } from '../image/image.js';
import { imageFolderSamples } from './folder.js';

export const CIFAR10_CLASSES = [
  'airplane',
  'automobile',
  'bird',
  'cat',
  'deer',
  'dog',
  'frog',
  'horse',
  'ship',
  'truck',
] as const;
const CLASS_INDEX = new Map<string, number>(CIFAR10_CLASSES.map((c, i) => [c, i]));

export interface Sample {
  /** Path of the sample inside its source. */
  name: string;
  /** Class index, or undefined when the source has no label. */
  label: number | undefined;
  /** The stored encoded image (JPEG/PNG) when the source has one. */
  bytes?: Uint8Array;
  /** Raw pixels when the source stores pixels (binary release). */
  rgb?: RgbImage;
}

export type Split = 'train' | 'test';

const IMAGE_RE = /\.(jpe?g|png|webp)$/i;
const RECORD = 1 + 3 * 32 * 32;

/** `x/test/cat/0001.jpg` -> { split: 'test', label: 3 } */
export function folderLabel(path: string): { split: string; label: number } | undefined {
  const parts = path.split(/[\\/]/);
  if (parts.length < 3) return undefined;
  const [split, cls, file] = parts.slice(-3) as [string, string, string];
  const label = CLASS_INDEX.get(cls);
  if (label === undefined || !IMAGE_RE.test(file)) return undefined;
  return { split, label };
}

/** One record of the binary release: label byte, then 1024 R, 1024 G, 1024 B. */
function* binaryRecords(buf: Uint8Array, tag: string): Generator<Sample> {
  if (buf.byteLength % RECORD !== 0) throw new Error(`${tag}: not a CIFAR-10 binary batch`);
  for (let r = 0; r < buf.byteLength / RECORD; r++) {
    const o = r * RECORD;
    const label = buf[o]!;
    if (label > 9) throw new Error(`${tag}: label ${label} out of range`);
    const data = new Uint8Array(32 * 32 * 3);
    for (let i = 0; i < 1024; i++) {
      data[i * 3] = buf[o + 1 + i]!;
      data[i * 3 + 1] = buf[o + 1 + 1024 + i]!;
      data[i * 3 + 2] = buf[o + 1 + 2048 + i]!;
    }
    yield { name: `${tag}#${r}`, label, rgb: { data, width: 32, height: 32 } };
  }
}

const batchNames = (split: Split) =>
  split === 'test' ? ['test_batch.bin'] : [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`);

async function* walk(dir: string): AsyncGenerator<string> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else if (e.isFile()) yield p;
  }
}

async function* fromFolder(dir: string, split: Split): AsyncGenerator<Sample> {
  for (const d of [dir, join(dir, 'cifar-10-batches-bin')]) {
    if (await stat(join(d, 'test_batch.bin')).catch(() => null)) {
      for (const b of batchNames(split)) yield* binaryRecords(await readFile(join(d, b)), b);
      return;
    }
  }
  let labelled = 0;
  const loose: string[] = [];
  for await (const p of walk(dir)) {
    const rel = relative(dir, p).split(sep).join('/');
    const hit = folderLabel(rel);
    if (hit) {
      if (hit.split !== split) continue;
      labelled++;
      yield { name: rel, label: hit.label, bytes: await readFile(p) };
    } else if (IMAGE_RE.test(p)) {
      loose.push(p);
    }
  }
  // A plain folder of images: no labels unless the parent folder is a class name.
  if (labelled === 0) {
    for (const p of loose) {
      yield {
        name: relative(dir, p),
        label: CLASS_INDEX.get(basename(join(p, '..'))),
        bytes: await readFile(p),
      };
    }
  }
}

async function* fromArchive(file: string, split: Split): AsyncGenerator<Sample> {
  const extract = tar.extract();
  const input = createReadStream(file);
  // pipeline() forwards a read or gunzip error to `extract`, so the loop below throws it.
  const piping = (
    file.endsWith('.tar') ? pipeline(input, extract) : pipeline(input, createGunzip(), extract)
  ).catch((e: Error) => extract.destroy(new Error(`cannot read archive ${file}: ${e.message}`)));
  const wanted = new Set(batchNames(split));
  try {
    for await (const entry of extract) {
      const name = entry.header.name;
      const chunks: Buffer[] = [];
      const hit = entry.header.type === 'file' ? folderLabel(name) : undefined;
      const isBatch = entry.header.type === 'file' && wanted.has(basename(name));
      if ((hit && hit.split === split) || isBatch) {
        for await (const c of entry) chunks.push(c as Buffer);
        const buf = Buffer.concat(chunks);
        if (isBatch) yield* binaryRecords(buf, basename(name));
        else
          yield {
            name,
            label: hit!.label,
            bytes: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength),
          };
      } else {
        entry.resume();
      }
    }
  } finally {
    // An early break (limit) or an error: release the file.
    input.destroy();
    extract.destroy();
    await piping;
  }
}

/** Whether `labels` are CIFAR-10's, in its order. */
export function isCifar10(labels: readonly string[]): boolean {
  return (
    labels.length === CIFAR10_CLASSES.length && labels.every((l, i) => l === CIFAR10_CLASSES[i])
  );
}

/**
 * Samples of one split, in a deterministic order; `limit` stops early. Without `labels`
 * (or with CIFAR-10's) the CIFAR-10 formats above; with a model's own labels any
 * ImageFolder, labelled by them (folder.ts).
 */
export async function* readSamples(
  path: string,
  opts: { split?: Split; limit?: number; labels?: readonly string[] } = {},
): AsyncGenerator<Sample> {
  const split = opts.split ?? 'test';
  const limit = opts.limit ?? Infinity;
  const st = await stat(path).catch(() => null);
  if (!st) throw new Error(`data source not found: ${path}`);
  const src =
    opts.labels && !isCifar10(opts.labels)
      ? imageFolderSamples(path, st.isDirectory(), opts.labels, split)
      : st.isDirectory()
        ? fromFolder(path, split)
        : fromArchive(path, split);
  let n = 0;
  for await (const s of src) {
    if (n >= limit) break;
    n++;
    yield s;
  }
}
