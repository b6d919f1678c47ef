import test from 'ava';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';
import { CIFAR10_CLASSES, readSamples } from '../../core/data/cifar.js';
import { SAMPLE_DIR } from '../../core/paths.js';

let dir: string;
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sf-cifar-'));
});
test.after.always(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function jpeg(cls: string) {
  const d = join(SAMPLE_DIR, 'test', cls);
  return readFile(join(d, (await readdir(d))[0]!));
}

test('ImageFolder .tar.gz: labels follow the official order, other splits skipped', async (t) => {
  const pack = tar.pack();
  // Written in reverse alphabetical order to catch file-system-order labelling.
  for (const cls of ['truck', 'airplane', 'cat']) {
    pack.entry({ name: `cifar10/test/${cls}/0001.jpg` }, await jpeg(cls));
    pack.entry({ name: `cifar10/train/${cls}/0001.jpg` }, await jpeg(cls));
  }
  pack.entry({ name: 'cifar10/README.txt' }, 'not an image');
  pack.finalize();
  const file = join(dir, 'mini.tar.gz');
  await pipeline(pack, createGzip(), createWriteStream(file));

  const test_ = [];
  for await (const s of readSamples(file, { split: 'test' })) test_.push(s);
  t.deepEqual(
    test_.map((s) => [s.name.split('/')[2], s.label]),
    [
      ['truck', 9],
      ['airplane', 0],
      ['cat', 3],
    ],
  );
  t.true(test_.every((s) => s.bytes && s.bytes[0] === 0xff && s.bytes[1] === 0xd8));
  const train = [];
  for await (const s of readSamples(file, { split: 'train', limit: 2 })) train.push(s);
  t.is(train.length, 2);
});

test('official binary release folder: pixels de-planarized, labels read', async (t) => {
  const bin = join(dir, 'cifar-10-batches-bin');
  await mkdir(bin, { recursive: true });
  const rec = (label: number, r: number, g: number, b: number) =>
    Buffer.concat([
      Buffer.of(label),
      Buffer.alloc(1024, r),
      Buffer.alloc(1024, g),
      Buffer.alloc(1024, b),
    ]);
  await writeFile(
    join(bin, 'test_batch.bin'),
    Buffer.concat([rec(7, 10, 20, 30), rec(2, 1, 2, 3)]),
  );
  const got = [];
  for await (const s of readSamples(dir, { split: 'test' })) got.push(s);
  t.is(got.length, 2);
  t.is(got[0]!.label, 7);
  t.is(CIFAR10_CLASSES[got[0]!.label!], 'horse');
  t.deepEqual([...got[0]!.rgb!.data.subarray(0, 6)], [10, 20, 30, 10, 20, 30]);
  t.is(got[1]!.label, 2);
});

test('a truncated binary batch is refused', async (t) => {
  const bin = join(dir, 'bad');
  await mkdir(bin, { recursive: true });
  await writeFile(join(bin, 'test_batch.bin'), Buffer.alloc(3000));
  await t.throwsAsync(
    async () => {
      for await (const _ of readSamples(bin)) void _;
    },
    { message: /not a CIFAR-10 binary batch/ },
  );
});

test('the shipped sample is a balanced labelled test split', async (t) => {
  const counts = new Array(10).fill(0);
  for await (const s of readSamples(SAMPLE_DIR)) counts[s.label!]++;
  t.deepEqual(counts, new Array(10).fill(50));
});

test('a missing source is a clear error', async (t) => {
  await t.throwsAsync(
    async () => {
      for await (const _ of readSamples(join(dir, 'nope'))) void _;
    },
    { message: /not found/ },
  );
});

test('a corrupt archive is a clear error, not a crash', async (t) => {
  const file = join(dir, 'broken.tar.gz');
  await writeFile(file, Buffer.from('this is not gzip at all, not even close'));
  await t.throwsAsync(
    async () => {
      for await (const _ of readSamples(file)) void _;
    },
    { message: /cannot read archive|incorrect header|unexpected end/i },
  );
});
