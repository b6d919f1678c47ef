/**
 * onnxruntime output vs the PyTorch reference the toolkit wrote at export
 * (test/fixtures/<model>/), on the shipped sample images, through the TypeScript
 * decode + preprocessing path: this is also the preprocessing parity check.
 */
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { onnxEngine } from '../../core/engine/onnx.js';
import { decodeImage, preprocess } from '../../core/image/image.js';
import { sha256 } from '../../core/model/load.js';
import { backbone } from '../../core/model/manifest.js';
import { PROJECT_ROOT, SAMPLE_DIR } from '../../core/paths.js';
import { sliceBatch, stack } from '../../core/tensor.js';
import { shippedModel } from '../helpers/model.js';

interface Reference {
  images: string[];
  pixelsSha256: string[];
  logits: number[][];
  headImages: number;
  headShape: number[];
}

/** Bound on |onnxruntime - PyTorch|; the measured value is logged by the test. */
const MAX_ABS_DIFF = 1e-3;

test('decoded pixels, head features and logits match PyTorch', async (t) => {
  const bundle = await shippedModel();
  const m = bundle.manifest;
  const dir = join(PROJECT_ROOT, 'test', 'fixtures', `${m.name}-v${m.version}`);
  const ref = JSON.parse(await readFile(join(dir, 'reference.json'), 'utf8')) as Reference;
  const headRef = new Float32Array((await readFile(join(dir, 'head.f32'))).buffer.slice(0));

  const pixels = await Promise.all(
    ref.images.map(async (p) => decodeImage(await readFile(join(SAMPLE_DIR, p)))),
  );
  pixels.forEach((px, i) =>
    t.is(sha256(px.data), ref.pixelsSha256[i]!, `pixels of ${ref.images[i]} (sharp vs PIL)`),
  );

  const x = stack(
    pixels
      .map((p) => preprocess(p, m.preprocessing))
      .map((v) => ({ data: v.data, shape: v.shape.slice(1) })),
  );
  const head = await onnxEngine.load(bundle.file('head'), { threads: 1 });
  const tail = await onnxEngine.load(bundle.file('tail'), { threads: 1 });
  const feats = await head.run(x);
  t.deepEqual(feats.shape.slice(1), backbone(m).split.tensorShape);
  t.deepEqual(ref.headShape, backbone(m).split.tensorShape);
  let headDiff = 0;
  for (let i = 0; i < headRef.length; i++)
    headDiff = Math.max(headDiff, Math.abs(headRef[i]! - feats.data[i]!));

  const logits = await tail.run(feats);
  let logitDiff = 0;
  ref.logits.forEach((row, i) => {
    const got = sliceBatch(logits, i).data;
    row.forEach((v, j) => (logitDiff = Math.max(logitDiff, Math.abs(v - got[j]!))));
    const top = (a: ArrayLike<number>) => Array.from(a).indexOf(Math.max(...Array.from(a)));
    t.is(top(got), top(row), `top-1 of ${ref.images[i]}`);
  });
  t.log(
    `max |onnx - pytorch|: head ${headDiff.toExponential(2)}, logits ${logitDiff.toExponential(2)}`,
  );
  t.true(headDiff <= MAX_ABS_DIFF, `head diff ${headDiff}`);
  t.true(logitDiff <= MAX_ABS_DIFF, `logit diff ${logitDiff}`);
  await head.close();
  await tail.close();
});
