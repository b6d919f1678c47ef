/**
 * The manifest's preprocessing as ImageNet recipes need it: `resize: "shorter"` (scale
 * the shorter side to S, centre-crop H x W), mean/std, RGB or BGR, NCHW or NHWC. The
 * schema checks it (format 3; formats 1 and 2 migrate), and core/image/image.ts applies
 * it the way the toolkit does (models/splitfleet_models/preprocess.py, PyTorch): the same
 * pixels give the same tensor. Python computes the expected tensors here, from the raw
 * pixels this test writes; BGR is the toolkit's preprocessing of the channel-swapped
 * image and NHWC its output permuted, which is what the two settings mean.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  preprocess,
  resizedSize,
  shorterSize,
  type Preprocessing,
  type RgbImage,
} from '../../core/image/image.js';
import { BundleError, MANIFEST_FORMAT, parseManifest } from '../../core/model/manifest.js';
import { PROJECT_ROOT } from '../../core/paths.js';
import { shippedModel } from '../helpers/model.js';

const PYTHON = process.env.SPLITFLEET_PYTHON ?? '/usr/bin/python3';
const hasTorch = spawnSync(PYTHON, ['-c', 'import torch, numpy'], { timeout: 60_000 }).status === 0;

/**
 * Accepted max abs difference of the normalized tensors: 1e-4. Both sides resample
 * with the same antialiased bilinear taps (PIL's filter, torch's interpolate with
 * antialias=True), core/image in float64, torch in float32: torch's float32 result
 * differs from its own float64 one by up to 0.0025 of a pixel level at these sizes
 * (640x480 -> 341x256 on noise; the source positions and weights are float32), which is
 * 0.0025 / 255 / 0.224 = 4.4e-5 after normalization (ImageNet's smallest std is 0.224);
 * this test measures up to about 7e-5 on hard edges. 1e-4 is still 170x below one 8-bit
 * pixel step (1 / 255 / 0.229 = 0.017): a wrong tap, size, crop offset or channel cannot
 * hide under it. Images used as they are (no resampling) must match exactly.
 */
const TOL = 1e-4;

const IMAGENET = {
  mean: [0.485, 0.456, 0.406] as [number, number, number],
  std: [0.229, 0.224, 0.225] as [number, number, number],
};

function prep(over: Partial<Preprocessing>): Preprocessing {
  return {
    layout: 'NCHW',
    size: [224, 224],
    colorSpace: 'RGB',
    pixelDivisor: 255,
    ...IMAGENET,
    resize: 'shorter',
    resizeShorter: 256,
    ...over,
  };
}

function pattern(width: number, height: number, seed: number): RgbImage {
  // gradients, a checkerboard and pseudo-random noise: edges and detail for the filter
  const data = new Uint8Array(width * height * 3);
  let s = seed >>> 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const i = (y * width + x) * 3;
      data[i] = Math.floor((255 * x) / Math.max(1, width - 1));
      data[i + 1] = ((x >> 3) + (y >> 3)) % 2 ? 230 : 20;
      data[i + 2] = s >>> 24;
    }
  }
  return { data, width, height };
}

test('shorter-side sizes use the toolkit’s integer arithmetic', (t) => {
  t.deepEqual(shorterSize(480, 640, 256), [256, 341]);
  t.deepEqual(shorterSize(640, 480, 256), [341, 256]);
  t.deepEqual(shorterSize(90, 120, 256), [256, 341]);
  t.deepEqual(resizedSize(480, 640, [224, 224], 256), [256, 341]);
  // a crop wider than the shorter-side scale leaves: cover it after all
  t.deepEqual(resizedSize(100, 400, [224, 300], 224), [224, 896]);
  t.deepEqual(resizedSize(400, 100, [300, 224], 224), [896, 224]);
  t.deepEqual(resizedSize(480, 640, [224, 224]), [224, 298]);
});

interface Case {
  name: string;
  img: RgbImage;
  p: Preprocessing;
}

test('preprocessing equals the toolkit: shorter side, cover, mean/std, BGR, NHWC', async (t) => {
  if (!hasTorch) {
    t.log(`${PYTHON} has no torch: the toolkit's side cannot run here`);
    t.pass();
    return;
  }
  const cases: Case[] = [
    { name: '640x480 shorter 256 -> 224', img: pattern(640, 480, 1), p: prep({}) },
    { name: '240x320 shorter 256 -> 224', img: pattern(240, 320, 2), p: prep({}) },
    { name: '120x90 upscaled, shorter 256', img: pattern(120, 90, 3), p: prep({}) },
    { name: '256x256 crop only', img: pattern(256, 256, 4), p: prep({}) },
    { name: '224x224 shorter 256', img: pattern(224, 224, 5), p: prep({}) },
    {
      name: '500x375 BGR',
      img: pattern(500, 375, 6),
      p: prep({ colorSpace: 'BGR', mean: [0.406, 0.456, 0.485], std: [0.225, 0.224, 0.229] }),
    },
    { name: '333x250 NHWC', img: pattern(333, 250, 7), p: prep({ layout: 'NHWC' }) },
    {
      name: '120x90 cover 96x64 BGR NHWC',
      img: pattern(120, 90, 8),
      p: prep({
        size: [64, 96],
        resize: 'none',
        resizeShorter: undefined,
        colorSpace: 'BGR',
        layout: 'NHWC',
      }),
    },
    {
      name: '300x100 shorter 224 -> 224x300',
      img: pattern(300, 100, 9),
      p: prep({ size: [224, 300], resizeShorter: 224 }),
    },
    {
      name: '96x96 as it is',
      img: pattern(96, 96, 10),
      p: prep({ size: [96, 96], resize: 'none', resizeShorter: undefined }),
    },
  ];
  const dir = await mkdtemp(join(tmpdir(), 'sf-preprocessing-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const list = cases.map(({ img, p }, i) =>
    JSON.stringify({
      i,
      w: img.width,
      h: img.height,
      size: p.size,
      resize: p.resize === 'shorter' ? p.resizeShorter : null,
      mean: p.mean,
      std: p.std,
      bgr: p.colorSpace === 'BGR',
      nhwc: p.layout === 'NHWC',
    }),
  );
  for (const [i, { img }] of cases.entries()) await writeFile(join(dir, `${i}.rgb`), img.data);
  await writeFile(join(dir, 'cases.jsonl'), list.join('\n') + '\n');
  const script = `
import json, sys, numpy as np
from splitfleet_models.preprocess import preprocess_image
d = sys.argv[1]
for line in open(d + '/cases.jsonl'):
    c = json.loads(line)
    rgb = np.fromfile(f"{d}/{c['i']}.rgb", dtype=np.uint8).reshape(c['h'], c['w'], 3)
    if c['bgr']:
        rgb = rgb[..., ::-1]
    x = preprocess_image(rgb, tuple(c['size']), c['resize'], tuple(c['mean']), tuple(c['std']))
    if c['nhwc']:
        x = x.permute(0, 2, 3, 1)
    x.contiguous().numpy().astype('<f4').tofile(f"{d}/{c['i']}.py.f32")
`;
  const r = spawnSync(PYTHON, ['-W', 'ignore', '-c', script, dir], {
    cwd: join(PROJECT_ROOT, 'models'),
    encoding: 'utf8',
    timeout: 300_000,
  });
  t.is(r.status, 0, r.stderr || String(r.error));
  for (const [i, { name, img, p }] of cases.entries()) {
    const ts = preprocess(img, p);
    const [h, w] = p.size;
    t.deepEqual(ts.shape, p.layout === 'NHWC' ? [1, h, w, 3] : [1, 3, h, w], name);
    const buf = await readFile(join(dir, `${i}.py.f32`));
    const py = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    t.is(py.length, ts.data.length, name);
    let max = 0;
    for (let k = 0; k < py.length; k++) max = Math.max(max, Math.abs(py[k]! - ts.data[k]!));
    const resampled = resizedSize(img.height, img.width, p.size, p.resizeShorter);
    const asIs = resampled[0] === img.height && resampled[1] === img.width;
    const tol = asIs ? 0 : TOL;
    t.log(`${name}: max |ts - py| = ${max.toExponential(2)} (accepted ${tol})`);
    t.true(max <= tol, `${name}: max abs diff ${max} > ${tol}`);
  }
});

test('BGR swaps the channels and NHWC interleaves them, nothing else', (t) => {
  const img = pattern(40, 30, 11);
  const base = prep({ size: [24, 24], resizeShorter: 28 });
  const rgb = preprocess(img, base);
  const bgr = preprocess(img, {
    ...base,
    colorSpace: 'BGR',
    mean: [...base.mean].reverse() as [number, number, number],
    std: [...base.std].reverse() as [number, number, number],
  });
  const nhwc = preprocess(img, { ...base, layout: 'NHWC' });
  const plane = 24 * 24;
  let swapped = 0;
  let interleaved = 0;
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      if (bgr.data[c * plane + i] === rgb.data[(2 - c) * plane + i]) swapped++;
      if (nhwc.data[i * 3 + c] === rgb.data[c * plane + i]) interleaved++;
    }
  }
  t.is(swapped, 3 * plane);
  t.is(interleaved, 3 * plane);
});

test('the schema takes the ImageNet recipe and refuses what does not hold together', async (t) => {
  const shipped = (await shippedModel()).manifest;
  const raw = JSON.parse(JSON.stringify(shipped)) as Record<string, unknown> & {
    preprocessing: Record<string, unknown>;
  };
  const withPrep = (p: Record<string, unknown>, format = MANIFEST_FORMAT) => ({
    ...raw,
    format,
    preprocessing: { ...raw.preprocessing, ...p },
  });
  const recipe = {
    size: [224, 224],
    resize: 'shorter',
    resizeShorter: 256,
    colorSpace: 'BGR',
    layout: 'NHWC',
  };
  const m = parseManifest(withPrep(recipe), 'test');
  t.is(m.format, 3);
  t.is(m.preprocessing.resizeShorter, 256);
  // the toolkit's format-2 manifests (resize "shorter" included) migrate
  t.is(parseManifest(withPrep(recipe, 2), 'test').format, 3);
  t.is(parseManifest({ ...raw, format: 1, kind: undefined }, 'test').kind, 'backbone');
  const refused: [Record<string, unknown>, RegExp][] = [
    [{ resize: 'shorter' }, /resizeShorter/],
    [{ resize: 'none', resizeShorter: 256 }, /preprocessing/],
    [{ ...recipe, resizeShorter: 200 }, /resizeShorter 200 is smaller than the input 224x224/],
    [{ colorSpace: 'YUV' }, /colorSpace/],
    [{ layout: 'CHW' }, /layout/],
    [{ size: [0, 224] }, /size/],
    [{ size: [224, 100000] }, /size/],
    [{ std: [0.2, 0, 0.2] }, /std/],
  ];
  for (const [p, why] of refused) {
    t.throws(
      () => parseManifest(withPrep(p), 'test'),
      { instanceOf: BundleError, message: why },
      JSON.stringify(p),
    );
  }
  t.throws(() => parseManifest(withPrep({}, MANIFEST_FORMAT + 1), 'test'), {
    instanceOf: BundleError,
    message: /format/,
  });
});
