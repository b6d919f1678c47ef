/**
 * What the demo shows: by default the shipped learned codec with the best accuracy per
 * byte within 2 points of its unsplit model, and its bytes per frame set against sending
 * the image (the stored JPEG, the best input codec, measured on the sample) and the
 * float32 split tensor.
 */
import test from 'ava';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { SAMPLE_DIR } from '../../core/paths.js';
import { splitTensorBytes } from '../../core/model/manifest.js';
import { scanZoo } from '../../core/model/zoo.js';
import { baseOf, DEMO_MAX_DROP, pickDemoCodec } from '../../cli/demo-baselines.js';
import { lastJson, runCli } from '../helpers/cli.js';

test('the pick is the best accuracy per byte of every learned point within 2 points', async (t) => {
  const { bundles } = await scanZoo();
  const pick = pickDemoCodec(bundles);
  t.truthy(pick, 'the shipped zoo has a learned codec within 2 points');
  const score = pick!.point.top1 / pick!.point.bitsPerImage;
  t.true(pick!.point.top1 >= pick!.base.manifest.accuracy.top1 - DEMO_MAX_DROP);
  let considered = 0;
  for (const b of bundles) {
    const m = b.manifest;
    if (m.kind !== 'codec') continue;
    const base = baseOf(m, bundles);
    t.truthy(base, `${m.name} has its unsplit model in the zoo`);
    for (const p of m.codec.points) {
      considered++;
      if (p.top1 >= base!.manifest.accuracy.top1 - DEMO_MAX_DROP)
        t.true(p.top1 / p.bitsPerImage <= score, `${m.name} ${p.label}`);
    }
  }
  t.true(considered > 1);
});

/** Sizes of the sample's stored JPEG files. */
async function storedSizes(): Promise<number[]> {
  const sizes: number[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (/\.jpe?g$/i.test(e.name)) sizes.push((await stat(p)).size);
    }
  };
  await walk(SAMPLE_DIR);
  return sizes;
}

test('demo --json: the picked codec, set against the image and the split tensor', async (t) => {
  const r = await runCli(
    [
      'demo',
      '--frames',
      '12',
      '--devices',
      '2',
      '--fps',
      '0',
      '--port',
      '0',
      '--ws-port',
      '0',
      '--json',
    ],
    { timeoutMs: 150_000 },
  );
  t.is(r.code, 0, r.stderr);
  const s = lastJson(r.stdout) as {
    results: number;
    bytesPerFrame: number;
    compressionRatio: number;
    vsStoredJpeg: number;
    vsBestInput: number;
    codec: string;
    model: string;
    baselines: {
      images: number;
      storedJpegBytes: number;
      bestInputCodec: string;
      bestInputBytes: number;
      splitFp32Bytes: number;
    };
  };
  t.is(s.results, 12);
  const { bundles } = await scanZoo();
  const pick = pickDemoCodec(bundles)!;
  const m = pick.bundle.manifest;
  t.is(s.model, `${m.name}@${m.version}`);
  t.is(s.codec, `${m.kind === 'codec' ? m.codec.method : ''}/${pick.point.label}`);
  const b = s.baselines;
  t.true(b.images > 0);
  // the stored files, framed: a file's size plus a header of a few dozen bytes
  const sizes = await storedSizes();
  t.true(b.storedJpegBytes > Math.min(...sizes) && b.storedJpegBytes < Math.max(...sizes) + 64);
  t.true(b.bestInputBytes > 0 && b.bestInputBytes < b.storedJpegBytes, JSON.stringify(b));
  t.is(b.splitFp32Bytes, splitTensorBytes(m));
  const near = (x: number, y: number) => Math.abs(x - y) <= 0.1 * y;
  t.true(near(s.vsStoredJpeg, b.storedJpegBytes / s.bytesPerFrame));
  t.true(near(s.vsBestInput, b.bestInputBytes / s.bytesPerFrame));
  t.true(near(s.compressionRatio, b.splitFp32Bytes / s.bytesPerFrame));
  // the learned codec sends less than any way of sending the image
  t.true(s.bytesPerFrame < b.bestInputBytes);
  t.regex(r.stderr, /smaller than the stored JPEG/);
});
