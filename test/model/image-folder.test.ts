/**
 * Any ImageFolder read with a model's own labels (core/data/folder.ts), as a folder and
 * as a .tar.gz, in both of the toolkit's layouts; what does not fit the labels is an
 * error naming the file.
 */
import test from 'ava';
import sharp from 'sharp';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';
import { CIFAR10_CLASSES, readSamples, type Sample, type Split } from '../../core/data/cifar.js';
import { DataError, TEST_EVERY } from '../../core/data/folder.js';

const LABELS = ['vehicle', 'person'];
let dir = '';
let png: Buffer;

async function tree(root: string, files: string[]): Promise<string> {
  for (const f of files) {
    await mkdir(dirname(join(root, f)), { recursive: true });
    await writeFile(join(root, f), png);
  }
  return root;
}

async function targz(file: string, files: string[]): Promise<string> {
  const pack = tar.pack();
  for (const f of files) pack.entry({ name: `./${f}` }, png);
  pack.finalize();
  await pipeline(pack, createGzip(), createWriteStream(file));
  return file;
}

async function read(
  path: string,
  split: Split,
  labels: readonly string[] = LABELS,
): Promise<Sample[]> {
  const out: Sample[] = [];
  for await (const s of readSamples(path, { split, labels })) out.push(s);
  return out;
}

const flat = [
  ...Array.from({ length: 7 }, (_, i) => `person/${i}.png`),
  ...Array.from({ length: 3 }, (_, i) => `vehicle/${i}.jpg`),
  'person/.hidden.png',
  'notes.txt',
];

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sf-image-folder-'));
  png = await sharp({ create: { width: 8, height: 6, channels: 3, background: '#808080' } })
    .png()
    .toBuffer();
});
test.after.always(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('<class>/<image>: every 5th image of a class is a test one, labels by the model', async (t) => {
  const folder = await tree(join(dir, 'flat'), flat);
  const archive = await targz(join(dir, 'flat.tar.gz'), flat);
  for (const src of [folder, archive]) {
    const test_ = await read(src, 'test');
    const train = await read(src, 'train');
    // person: 7 images, the 5th is its test one; vehicle: 3, none is 5th: its last
    t.deepEqual(
      test_.map((s) => [s.name, s.label]),
      [
        [`person/${TEST_EVERY - 1}.png`, 1],
        ['vehicle/2.jpg', 0],
      ],
    );
    t.is(train.length, 10 - test_.length);
    t.false(train.some((s) => test_.some((x) => x.name === s.name)));
    t.true(train.every((s) => s.bytes !== undefined && s.bytes.byteLength === png.byteLength));
  }
});

test('train/ and test/ (val/) folders are the splits', async (t) => {
  const files = [
    'train/person/a.png',
    'train/vehicle/b.png',
    'val/person/c.png',
    'val/vehicle/d.png',
  ];
  const folder = await tree(join(dir, 'split'), files);
  t.deepEqual(
    (await read(folder, 'test')).map((s) => [s.name, s.label]),
    [
      ['val/person/c.png', 1],
      ['val/vehicle/d.png', 0],
    ],
  );
  t.is((await read(folder, 'train')).length, 2);
});

test('what does not fit the labels or the layouts is an error naming it', async (t) => {
  const cases: [string, string[], RegExp][] = [
    [
      'other',
      ['person/a.png', 'cat/b.png'],
      /class folder "cat" \(cat\/b\.png\) is not one of the model's labels/,
    ],
    [
      'mixed',
      ['train/person/a.png', 'person/b.png'],
      /some images are under train\/ or test\/ and some are not/,
    ],
    ['loose', ['a.png'], /image a\.png is not inside a class folder/],
    ['empty', ['notes.txt'], /no images found/],
  ];
  for (const [name, files, why] of cases) {
    const folder = await tree(join(dir, name), files);
    await t.throwsAsync(read(folder, 'test'), { instanceOf: DataError, message: why }, name);
  }
});

test('CIFAR-10 labels keep the CIFAR-10 reader', async (t) => {
  const folder = await tree(join(dir, 'cifar'), ['test/cat/0.png', 'train/dog/1.png']);
  t.deepEqual(
    (await read(folder, 'test', CIFAR10_CLASSES)).map((s) => [s.name, s.label]),
    [['test/cat/0.png', 3]],
  );
});
