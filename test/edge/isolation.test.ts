/**
 * A decoder failure never takes the edge down: decoders run in their own processes
 * (edge-broker/decode/pool.ts), and each fault here is set off inside one of them by the
 * test fixture it preloads (test/fixtures/decoder-faults.ts), not by anything the pool
 * says to it. A native abort under load through the broker, a decoder that hangs, one that
 * runs out of heap, and a frame that kills every decoder it reaches.
 */
import test from 'ava';
import { connectAsync } from 'mqtt';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sampleFrames } from '../../bench/sim-devices.js';
import { encodeFrame, type Frame } from '../../core/wire/frame.js';
import { parseError, parseResult, type ResultMessage } from '../../core/wire/messages.js';
import { deviceTopic } from '../../core/wire/topics.js';
import { startBroker } from '../../edge-broker/broker.js';
import { EdgeBus } from '../../edge-broker/bus.js';
import type { DecodeFailure } from '../../edge-broker/decode/decoder.js';
import { DecoderPool, type PoolOptions } from '../../edge-broker/decode/pool.js';
import { Intake } from '../../edge-broker/intake.js';
import { faultModule } from '../fixtures/decoder-faults.js';
import { MODEL, shippedModel } from '../helpers/model.js';
import { waitFor } from '../helpers/wait.js';

let framesOnce: Promise<Frame[]> | undefined;
const frames = () => (framesOnce ??= sampleFrames(MODEL, 'split-q', 1, 8));

async function tempDir(t: { teardown(f: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sf-iso-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

interface Outcome {
  result?: ResultMessage;
  error?: DecodeFailure;
  calls: number;
}

async function submitAll(pool: DecoderPool, n: number, from = 0): Promise<Outcome[]> {
  const fs = await frames();
  return Array.from({ length: n }, (_, k) => {
    const i = from + k;
    const o: Outcome = { calls: 0 };
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
    if (!ok) throw new Error(`frame ${i} refused`);
    return o;
  });
}

const startPool = async (extra: Partial<PoolOptions>) =>
  DecoderPool.start({
    bundles: [await shippedModel()],
    workers: 2,
    threads: 1,
    edgeId: 'iso-test',
    maxQueue: 1000,
    maxBatch: 4,
    maxWaitMs: 0,
    ...extra,
  });

test('a decoder that aborts natively under load: every frame answered once, the broker keeps serving', async (t) => {
  const dir = await tempDir(t);
  const once = join(dir, 'fault');
  const broker = await startBroker({ port: 0, wsPort: null });
  const intake = new Intake({
    broker,
    bus: new EdgeBus(),
    edgeId: 'iso-edge',
    base: 'splitfleet',
    fleet: '+',
    bundles: [await shippedModel()],
    decoders: {
      workers: 2,
      threads: 1,
      maxQueue: 1000,
      maxBatch: 4,
      maxWaitMs: 0,
      preload: faultModule({ fault: 'abort', at: '5', once }),
    },
  });
  await intake.start();
  t.teardown(async () => {
    await intake.stop();
    await broker.close();
  });

  const device = await connectAsync(broker.url, { clientId: 'iso-dev', reconnectPeriod: 0 });
  const other = await connectAsync(broker.url, { clientId: 'iso-other', reconnectPeriod: 0 });
  t.teardown(async () => {
    await device.endAsync(true);
    await other.endAsync(true);
  });
  const answers = new Map<number, string[]>();
  device.on('message', (_topic, payload) => {
    const r = parseResult(payload);
    const e = parseError(payload);
    const id = r?.frameId ?? e?.frameId;
    if (id === undefined || id === null) return;
    answers.set(id, [...(answers.get(id) ?? []), r ? 'result' : e!.code]);
  });
  await device.subscribeAsync(
    (['result', 'error'] as const).map((c) => deviceTopic('iso', 'cam', c)),
    { qos: 1 },
  );
  const fs = await frames();
  const n = 200;
  const sent = Array.from({ length: n }, (_, i) =>
    device.publishAsync(
      deviceTopic('iso', 'cam', 'features'),
      Buffer.from(encodeFrame({ ...fs[i % fs.length]!, frameId: i })),
      { qos: 1 },
    ),
  );
  // the decoder aborts while the frames are being decoded; another client is served
  await waitFor(() => existsSync(once), 60_000);
  let acked = 0;
  for (let i = 0; i < 5; i++) {
    await other.publishAsync(deviceTopic('iso', 'other', 'status'), 'up', { qos: 1 });
    acked++;
  }
  t.is(acked, 5, 'PUBACKs came back to another client after the abort');
  await Promise.all(sent);
  await waitFor(() => answers.size === n, 90_000);
  await waitFor(() => intake.pool.inFlight === 0 && intake.pool.backlog === 0);
  const codes = [...answers.values()];
  t.true(
    codes.every((c) => c.length === 1),
    'exactly one answer per frame',
  );
  t.true(codes.every(([c]) => c === 'result' || c === 'inference-failed'));
  t.is(codes.filter(([c]) => c === 'result').length, n, 'each frame decoded, once re-queued');
  t.is(intake.pool.stats.restarts, 1);
  t.true(intake.pool.stats.retried > 0);
  // the replacement decodes
  const more = fs.slice(0, 3).map((f, k) => ({ ...f, frameId: n + k }));
  for (const f of more) {
    await device.publishAsync(deviceTopic('iso', 'cam', 'features'), Buffer.from(encodeFrame(f)), {
      qos: 1,
    });
  }
  await waitFor(() => more.every((f) => answers.get(f.frameId)?.[0] === 'result'), 30_000);
  t.pass();
});

test('a decoder that hangs is killed after its deadline; its frames are decoded again', async (t) => {
  const dir = await tempDir(t);
  const pool = await startPool({
    // a short deadline, also on a busy machine (where the typical batch time is long)
    hangMinMs: 1000,
    hangFactor: 10,
    preload: faultModule({ fault: 'hang', at: '3', once: join(dir, 'fault') }),
  });
  t.teardown(() => pool.close());
  const out = await submitAll(pool, 100);
  await waitFor(() => out.every((o) => o.calls > 0), 60_000);
  t.true(
    out.every((o) => o.calls === 1),
    'exactly one answer per frame',
  );
  t.true(
    out.every((o) => o.result),
    'every frame decoded',
  );
  t.true(pool.stats.hung >= 1, 'the hung decoder was killed');
  t.true(pool.stats.retried > 0);
  await waitFor(() => pool.stats.restarts >= 1);
});

test('a decoder past its heap limit dies alone; its frames are decoded again', async (t) => {
  const dir = await tempDir(t);
  const pool = await startPool({
    heapMiB: 128,
    preload: faultModule({ fault: 'oom', at: '2', once: join(dir, 'fault') }),
  });
  t.teardown(() => pool.close());
  const out = await submitAll(pool, 60);
  await waitFor(() => out.every((o) => o.calls > 0), 60_000);
  t.true(out.every((o) => o.calls === 1 && o.result));
  t.is(pool.stats.restarts, 1);
});

test('a frame in flight in two deaths is answered inference-failed; the others decode', async (t) => {
  // every decoder that takes frame 7 aborts
  const pool = await startPool({ preload: faultModule({ fault: 'abort', frame: '7' }) });
  t.teardown(() => pool.close());
  const out = await submitAll(pool, 40);
  await waitFor(() => out.every((o) => o.calls > 0), 60_000);
  t.true(
    out.every((o) => o.calls === 1),
    'exactly one answer per frame',
  );
  t.is(out[7]!.error?.code, 'inference-failed');
  const failed = out.filter((o) => o.error);
  t.true(failed.length <= 4, `${failed.length} failed: only frames in both deaths`);
  t.true(failed.every((o) => o.error!.code === 'inference-failed'));
  t.is(pool.stats.restarts, 2);
  // after the restarts (with backoff) the pool decodes again
  const after = await submitAll(pool, 4, 100);
  await waitFor(() => after.every((o) => o.calls === 1), 30_000);
  t.true(after.every((o) => o.result));
});
