/**
 * The edge's decoder pool (edge-broker/decode/pool.ts): real decoder processes with the
 * shipped model. Batching, a bounded queue, a decoder that dies mid-batch, one that cannot
 * load, image frames beside feature frames. (Native aborts, hangs and running out of
 * memory: isolation.test.ts.)
 */
import test from 'ava';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadBundle, type Bundle } from '../../core/model/load.js';
import type { Frame } from '../../core/wire/frame.js';
import type { ResultMessage } from '../../core/wire/messages.js';
import { DecodeFailure } from '../../edge-broker/decode/decoder.js';
import { DecoderPool, type PoolOptions } from '../../edge-broker/decode/pool.js';
import { sampleFrames } from '../../bench/sim-devices.js';
import { faultModule } from '../fixtures/decoder-faults.js';
import { MODEL, shippedModel } from '../helpers/model.js';
import { waitFor } from '../helpers/wait.js';

let framesOnce: Promise<Frame[]> | undefined;
const frames = () => (framesOnce ??= sampleFrames(MODEL, 'split-q', 1, 8));

interface Outcome {
  frameId: number;
  result?: ResultMessage;
  error?: DecodeFailure;
  calls: number;
}

/** Submit `n` frames; each outcome records how often `done` was called for it. */
async function submitAll(pool: DecoderPool, n: number, refusals?: number[]): Promise<Outcome[]> {
  const fs = await frames();
  const out: Outcome[] = [];
  for (let i = 0; i < n; i++) {
    const o: Outcome = { frameId: i, calls: 0 };
    out.push(o);
    const ok = pool.submit({
      deviceId: 'd',
      frame: { ...fs[i % fs.length]!, frameId: i },
      receivedAt: Date.now(),
      done: (err, r) => {
        o.calls++;
        if (err) o.error = err as DecodeFailure;
        else o.result = r;
      },
    });
    if (!ok) refusals?.push(i);
  }
  return out;
}

const start = async (extra: Partial<PoolOptions> = {}) =>
  DecoderPool.start({
    bundles: [await shippedModel()],
    workers: 2,
    threads: 1,
    edgeId: 'pool-test',
    maxQueue: 1000,
    ...extra,
  });

test('frames queued together run through the tail in batches; each gets its own result', async (t) => {
  const pool = await start({ workers: 1, maxBatch: 8, maxWaitMs: 50 });
  const out = await submitAll(pool, 40);
  await waitFor(() => out.every((o) => o.calls > 0), 60_000);
  t.true(out.every((o) => o.calls === 1 && o.result?.frameId === o.frameId));
  t.true(pool.stats.batches <= 10, `40 frames in ${pool.stats.batches} batches`);
  t.true(
    out.some((o) => (o.result?.latency.batch ?? 0) > 1),
    'batch size reported',
  );
  // the same image alone and in a batch: the same class and (nearly) the same score
  const alone = await submitAll(pool, 1);
  await waitFor(() => alone[0]!.calls > 0);
  t.is(alone[0]!.result!.classIndex, out[0]!.result!.classIndex);
  t.true(Math.abs(alone[0]!.result!.score - out[0]!.result!.score) < 1e-4);
  await pool.close();
});

test('a full queue refuses at once; what it took is answered', async (t) => {
  const pool = await start({ workers: 1, maxQueue: 5, maxBatch: 2 });
  const refused: number[] = [];
  const out = await submitAll(pool, 30, refused);
  t.true(refused.length > 0, 'refusals');
  const taken = out.filter((o) => !refused.includes(o.frameId));
  await waitFor(() => taken.every((o) => o.calls === 1), 60_000);
  t.true(taken.every((o) => o.result !== undefined));
  t.true(
    out.filter((o) => refused.includes(o.frameId)).every((o) => o.calls === 0),
    'a refused frame is the caller’s to answer (overloaded), not the pool’s',
  );
  await pool.close();
});

test('a decoder that dies mid-batch is replaced; its frames are decoded again, each answered once', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sf-pool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // one decoder of the two throws an uncaught error with its third batch in hand
  const pool = await start({
    workers: 2,
    maxBatch: 4,
    maxWaitMs: 0,
    preload: faultModule({ fault: 'throw', at: '3', once: join(dir, 'fault') }),
  });
  const out = await submitAll(pool, 300);
  await waitFor(() => out.every((o) => o.calls > 0), 90_000);
  t.true(
    out.every((o) => o.calls === 1),
    'exactly one answer per frame',
  );
  t.is(
    out.filter((o) => o.result).length,
    300,
    'every frame decoded (on its second try if need be)',
  );
  t.is(pool.stats.restarts, 1);
  t.true(pool.stats.retried > 0, `${pool.stats.retried} frames re-queued`);
  t.is(pool.size, 2);
  // the replacement decodes
  const after = await submitAll(pool, 4);
  await waitFor(() => after.every((o) => o.calls === 1));
  t.true(after.every((o) => o.result));
  await pool.close();
});

test('a decoder that cannot load its networks fails the start with the reason', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sf-pool-'));
  const src = (await shippedModel()).dir;
  await cp(src, join(dir, 'b'), { recursive: true });
  const bundle: Bundle = await loadBundle(join(dir, 'b'));
  await writeFile(bundle.file('tail'), 'not an onnx file');
  const e = await t.throwsAsync(start({ bundles: [bundle], workers: 1 }));
  t.regex(e!.message, /decoder process 0: .*(sha256|onnx|protobuf|parse|load)/i);
  await rm(dir, { recursive: true, force: true });
});

test('image frames (input offload) decode through the same pool and batches as feature frames', async (t) => {
  // png is lossless: the edge sees the device's very pixels, so the whole model on the
  // picture must give what the head on the device and the tail on the edge give
  const [png, fp32, jpeg] = await Promise.all([
    sampleFrames(MODEL, 'png', 0, 8),
    sampleFrames(MODEL, 'split-fp32', 0, 8),
    sampleFrames(MODEL, 'jpeg', 2, 8),
  ]);
  t.is(png[0]!.codecId, 19);
  t.is(jpeg[0]!.codecId, 16);
  const pool = await start({ workers: 1, maxBatch: 32, maxWaitMs: 50 });
  t.teardown(() => pool.close());
  const answers: { result?: ResultMessage; error?: DecodeFailure }[] = [];
  const submit = (frame: Frame, frameId: number) =>
    pool.submit({
      deviceId: 'd',
      frame: { ...frame, frameId },
      receivedAt: Date.now(),
      done: (err, r) => (answers[frameId] = err ? { error: err as DecodeFailure } : { result: r }),
    });
  // one batch: picture frames of two codecs, feature frames and a corrupt picture
  png.forEach((f, i) => submit(f, i));
  fp32.forEach((f, i) => submit(f, 8 + i));
  jpeg.forEach((f, i) => submit(f, 16 + i));
  submit({ ...png[0]!, payload: png[0]!.payload.subarray(0, 40) }, 24);
  await waitFor(() => answers.filter(Boolean).length === 25, 60_000);
  for (let i = 0; i < 8; i++) {
    const a = answers[i]!.result!;
    const b = answers[8 + i]!.result!;
    t.is(a.codec, 'png');
    t.is(b.codec, 'split-fp32');
    t.is(a.classIndex, b.classIndex, `sample ${i}`);
    t.true(Math.abs(a.score - b.score) < 1e-4, `sample ${i}: ${a.score} vs ${b.score}`);
    const j = answers[16 + i]!.result!;
    t.is(j.codec, 'jpeg');
    t.is(j.frameId, 16 + i);
    t.is(j.payloadBytes, jpeg[i]!.payload.byteLength);
  }
  // the pool batched pictures together
  t.true((answers[0]!.result!.latency.batch ?? 0) > 1);
  t.is(answers[24]!.error?.code, 'corrupt-payload');
});
