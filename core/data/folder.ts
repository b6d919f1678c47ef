/**
 * Any ImageFolder with a model's own labels, as a folder or a .tar/.tar.gz, in the
 * toolkit's two layouts (models/splitfleet_models/data.py `load_images`):
 *
 *   <root>/train/<class>/<image>, <root>/test/<class>/<image>   (val, validation = test)
 *   <root>/<class>/<image>     every 5th image of each class (sorted by path) is the test
 *                              split, at least one per class; the rest is train
 *
 * A sample's label is the index of its class folder in the model's labels; a class
 * folder that is not one of them, images outside class folders and a mix of the two
 * layouts are errors that name the file. Images: .jpg, .jpeg, .png, .webp; names
 * starting with '.' are skipped.
 */
import { createReadStream } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import type { Sample, Split } from './cifar.js';

const IMAGE_RE = /\.(jpe?g|png|webp)$/i;
const SPLIT_NAMES: Record<string, Split> = {
  train: 'train',
  test: 'test',
  val: 'test',
  validation: 'test',
};
/** Without train/ and test/ folders, every TEST_EVERY-th image of a class is a test one. */
export const TEST_EVERY = 5;

export class DataError extends Error {
  override name = 'DataError';
}

const isImage = (path: string) => {
  const parts = path.split('/');
  return !parts.some((p) => p.startsWith('.')) && IMAGE_RE.test(parts.at(-1)!);
};

/** The image paths of `split` with their labels, sorted by path (the toolkit's order). */
export function selectImages(
  where: string,
  paths: readonly string[],
  labels: readonly string[],
  split: Split,
): { path: string; label: number }[] {
  const index = new Map(labels.map((l, i) => [l, i]));
  const parsed = paths.filter(isImage).map((path) => {
    const parts = path.split('/');
    if (parts.length < 2)
      throw new DataError(
        `${where}: image ${path} is not inside a class folder (expected <root>/<class>/<image> or <root>/train/<class>/<image>)`,
      );
    const named = parts.length >= 3 ? SPLIT_NAMES[parts.at(-3)!.toLowerCase()] : undefined;
    const cls = parts.at(-2)!;
    const label = index.get(cls);
    if (label === undefined)
      throw new DataError(
        `${where}: class folder ${JSON.stringify(cls)} (${path}) is not one of the model's labels ${JSON.stringify(labels)}`,
      );
    return { path, split: named, label };
  });
  if (parsed.length === 0) throw new DataError(`no images found in ${where}`);
  const withSplit = parsed.filter((p) => p.split !== undefined);
  if (withSplit.length > 0 && withSplit.length !== parsed.length) {
    const odd = parsed.find((p) => p.split === undefined)!;
    throw new DataError(
      `${where}: some images are under train/ or test/ and some are not (e.g. ${odd.path}); use one layout`,
    );
  }
  parsed.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (withSplit.length > 0) return parsed.filter((p) => p.split === split);
  const byClass = new Map<number, typeof parsed>();
  for (const p of parsed) byClass.set(p.label, [...(byClass.get(p.label) ?? []), p]);
  const out: typeof parsed = [];
  for (const items of byClass.values()) {
    const test = items.filter((_, i) => (i + 1) % TEST_EVERY === 0);
    if (test.length === 0) test.push(items.at(-1)!);
    const picked = split === 'test' ? test : items.filter((p) => !test.includes(p));
    out.push(...picked);
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

async function walk(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await walk(dir, p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** The entries of an archive: each file's name (and its bytes when `want` says so). */
async function* archiveFiles(
  file: string,
  want: (name: string) => boolean,
): AsyncGenerator<{ name: string; bytes?: Uint8Array }> {
  const extract = tar.extract();
  const input = createReadStream(file);
  const piping = (
    file.endsWith('.tar') ? pipeline(input, extract) : pipeline(input, createGunzip(), extract)
  ).catch((e: Error) => extract.destroy(new Error(`cannot read archive ${file}: ${e.message}`)));
  try {
    for await (const entry of extract) {
      const name = entry.header.name.replace(/^\.\//, '');
      if (entry.header.type !== 'file') {
        entry.resume();
        continue;
      }
      if (!want(name)) {
        entry.resume();
        yield { name };
        continue;
      }
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      const buf = Buffer.concat(chunks);
      yield { name, bytes: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) };
    }
  } finally {
    input.destroy();
    extract.destroy();
    await piping;
  }
}

/** The samples of one split of an ImageFolder, labelled by `labels`; a folder's in path
 * order, an archive's in its own order (read twice: names, then the images wanted). */
export async function* imageFolderSamples(
  path: string,
  isDir: boolean,
  labels: readonly string[],
  split: Split,
): AsyncGenerator<Sample> {
  if (isDir) {
    for (const { path: rel, label } of selectImages(path, await walk(path), labels, split)) {
      yield { name: rel, label, bytes: await readFile(join(path, rel)) };
    }
    return;
  }
  const names: string[] = [];
  for await (const f of archiveFiles(path, () => false)) names.push(f.name);
  const wanted = new Map(selectImages(path, names, labels, split).map((s) => [s.path, s.label]));
  for await (const f of archiveFiles(path, (n) => wanted.has(n))) {
    if (f.bytes) yield { name: f.name, label: wanted.get(f.name)!, bytes: f.bytes };
  }
}
