/**
 * Preprocessing, TypeScript (core/image/image.ts) vs the toolkit
 * (models/splitfleet_models/preprocess.py, PyTorch): the same RGB pixels, of the model's
 * size and of other sizes (down- and upscaled, wide and tall, odd crops), must give the
 * same float32 tensor. Pixels are handed to Python raw, so decoding is not part of the
 * comparison (sharp vs PIL decoding has its own test, test/engine/parity.test.ts).
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeImage, fitSize, preprocess, type RgbImage } from '../../core/image/image.js';
import { PROJECT_ROOT } from '../../core/paths.js';
import { readSamples } from '../../core/data/cifar.js';
import { SAMPLE_DIR } from '../../core/paths.js';
import { shippedModel } from '../helpers/model.js';

const PYTHON = process.env.SPLITFLEET_PYTHON ?? '/usr/bin/python3';

/**
 * Tolerances. Same size: the operations are the same float32 operations in the same
 * order, so the tensors must be identical (0). Other sizes: both sides resample with the
 * same taps, but torch sums the taps in float32 and here they are summed in float64
 * (both then stored as float32), so pixel values (0..255) may differ by a few float32
 * ulps of 255 (2^-16 each); after / 255 / std (std >= 0.2435) that is at most about
 * 1e-6 per ulp. 1e-4 leaves 100x room and is still 400x below one 8-bit pixel step
 * (1 / 255 / 0.2616 = 0.015), so a wrong tap, offset or rounding cannot hide under it.
 */
const TOL_RESIZED = 1e-4;

function pattern(width: number, height: number, seed: number): RgbImage {
  // gradients, a checkerboard and pseudo-random noise: edges and detail for the filter
  const data = new Uint8Array(width * height * 3);
  let s = seed >>> 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const i = (y * width + x) * 3;
      data[i] = Math.floor((255 * x) / Math.max(1, width - 1));
      data[i + 1] = ((x >> 2) + (y >> 2)) % 2 ? 230 : 20;
      data[i + 2] = s >>> 24;
    }
  }
  return { data, width, height };
}

let dir = '';
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sf-preprocess-parity-'));
});
test.after.always(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('fitSize covers the model size with the aspect kept (integer arithmetic)', (t) => {
  t.deepEqual(fitSize(32, 32, [32, 32]), [32, 32]);
  t.deepEqual(fitSize(480, 640, [32, 32]), [32, 42]);
  t.deepEqual(fitSize(640, 480, [32, 32]), [42, 32]);
  t.deepEqual(fitSize(24, 20, [32, 32]), [38, 32]);
  t.deepEqual(fitSize(61, 97, [32, 32]), [32, 50]);
});

test('TypeScript preprocessing equals the toolkit on the same pixels', async (t) => {
  const p = (await shippedModel()).manifest.preprocessing;
  t.deepEqual(p.size, [32, 32]);
  const images: { name: string; img: RgbImage }[] = [
    { name: '32x32', img: pattern(32, 32, 1) },
    { name: '97x61', img: pattern(97, 61, 2) },
    { name: '61x97', img: pattern(61, 97, 3) },
    { name: '640x480', img: pattern(640, 480, 4) },
    { name: '20x24', img: pattern(20, 24, 5) }, // upscaled
    { name: '33x32', img: pattern(33, 32, 6) }, // crop only
    { name: '35x33', img: pattern(35, 33, 7) },
  ];
  // a real photo: the first sample image, also enlarged with sharp to 100x75
  for await (const s of readSamples(SAMPLE_DIR, { split: 'test' })) {
    const img = await decodeImage(s.bytes!);
    images.push({ name: 'sample', img });
    const sharp = (await import('sharp')).default;
    const big = await sharp(Buffer.from(img.data), { raw: { width: 32, height: 32, channels: 3 } })
      .resize(100, 75, { fit: 'fill' })
      .png()
      .toBuffer();
    images.push({ name: 'sample-100x75', img: await decodeImage(big) });
    break;
  }
  const list: string[] = [];
  for (const [i, { img }] of images.entries()) {
    await writeFile(join(dir, `${i}.rgb`), img.data);
    list.push(`${i} ${img.width} ${img.height}`);
  }
  await writeFile(join(dir, 'list.txt'), list.join('\n') + '\n');
  const script = `
import sys, numpy as np
from splitfleet_models.preprocess import preprocess_image
d = sys.argv[1]
for line in open(d + '/list.txt'):
    i, w, h = line.split()
    rgb = np.fromfile(f'{d}/{i}.rgb', dtype=np.uint8).reshape(int(h), int(w), 3)
    x = preprocess_image(rgb, (${p.size[0]}, ${p.size[1]}))
    assert x.dtype.is_floating_point and tuple(x.shape) == (1, 3, ${p.size[0]}, ${p.size[1]}), x.shape
    x.numpy().astype('<f4').tofile(f'{d}/{i}.py.f32')
`;
  const r = spawnSync(PYTHON, ['-W', 'ignore', '-c', script, dir], {
    cwd: join(PROJECT_ROOT, 'models'),
    encoding: 'utf8',
    timeout: 120_000,
  });
  t.is(r.status, 0, r.stderr || String(r.error));
  for (const [i, { name, img }] of images.entries()) {
    const ts = preprocess(img, p);
    t.deepEqual(ts.shape, [1, 3, p.size[0], p.size[1]]);
    const buf = await readFile(join(dir, `${i}.py.f32`));
    const py = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    t.is(py.length, ts.data.length, name);
    let max = 0;
    for (let k = 0; k < py.length; k++) max = Math.max(max, Math.abs(py[k]! - ts.data[k]!));
    const tol = img.width === p.size[1] && img.height === p.size[0] ? 0 : TOL_RESIZED;
    t.log(`${name}: max |ts - py| = ${max.toExponential(2)} (tolerance ${tol})`);
    t.true(max <= tol, `${name}: max abs diff ${max} > ${tol}`);
  }
});
