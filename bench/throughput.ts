/**
 * `splitfleet bench throughput`: how close the edge gets to the limit of this machine.
 *
 * 1. Raw engine: the edge's own decoder pool (the same decoder processes, batching, entropy
 *    decoder and tail) fed in-process from a closed loop of real frames, no broker:
 *    results/s.
 * 2. Through the broker: an edge process, and simulated devices (raw MQTT connections
 *    replaying real frames at QoS 1, sim-devices.ts) offering a rising share of the raw
 *    rate. Per step: results/s, device-side latency p50/p99, refusals (`overloaded`).
 *    The best step whose p99 stays under the latency bound gives `ratioToRawEngine`.
 * 3. Broker fan-in: the same frames at QoS 1 from many publishers to one QoS 1
 *    subscriber, on the edge's broker and on Debian's mosquitto: messages/s and ratio.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqttPacket from 'mqtt-packet';
import { bundleFor } from '../core/model/bundle.js';
import { encodeFrame, type Frame } from '../core/wire/frame.js';
import { deviceFilter, deviceTopic } from '../core/wire/topics.js';
import { percentile, round } from '../core/util/stats.js';
import { DecoderPool } from '../edge-broker/decode/pool.js';
import { rawClient, rssMiB, startEdgeProcess } from './connections.js';
import { startMosquitto } from './mosquitto.js';
import { sampleFrames, SimDevices } from './sim-devices.js';

export interface ThroughputOptions {
  devices: number;
  /** Seconds per measured step. */
  seconds: number;
  model: string;
  codec: string;
  point: number;
  workers: number;
  maxBatch: number;
  maxWaitMs: number;
  /** p99 latency bound of a step that counts (ms). */
  p99BoundMs: number;
  /** Shares of the raw rate offered, one step each. */
  loads: number[];
  log?: (line: string) => void;
}

export interface ThroughputStep {
  offeredPerSecond: number;
  fpsPerDevice: number;
  resultsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  overloaded: number;
  /** Frames due while a device's window (4 unanswered) was full: offered, not sent. */
  skipped: number;
  unanswered: number;
  edgeRssMiB: number;
}

export interface ThroughputReport {
  machine: { cpus: number; node: string };
  model: string;
  codec: string;
  point: number;
  frameBytes: number;
  devices: number;
  workers: number;
  maxBatch: number;
  maxWaitMs: number;
  raw: { resultsPerSecond: number; meanBatch: number };
  steps: ThroughputStep[];
  best: ThroughputStep | null;
  p99BoundMs: number;
  ratioToRawEngine: number;
  fanIn: {
    publishers: number;
    seconds: number;
    edgeMessagesPerSecond: number;
    mosquittoMessagesPerSecond: number;
    ratio: number;
  };
}

/** The decoder pool alone, fed as fast as it takes frames for `seconds`. */
async function rawEngine(
  o: ThroughputOptions,
  frames: readonly Frame[],
): Promise<{ resultsPerSecond: number; meanBatch: number }> {
  const pool = await DecoderPool.start({
    bundles: [await bundleFor(o.model, o.codec)],
    workers: o.workers,
    threads: 1,
    edgeId: 'raw',
    maxQueue: 1_000_000,
    maxBatch: o.maxBatch,
    maxWaitMs: o.maxWaitMs,
  });
  const depth = o.workers * o.maxBatch * 2;
  let done = 0;
  let counting = false;
  let stop = false;
  let n = 0;
  let inFlight = 0;
  let drained: (() => void) | null = null;
  const feed = () => {
    while (!stop && inFlight < depth) {
      const frame = frames[n++ % frames.length]!;
      inFlight++;
      pool.submit({
        deviceId: 'raw',
        frame: { ...frame, frameId: n },
        receivedAt: Date.now(),
        done: () => {
          inFlight--;
          if (counting) done++;
          if (stop && inFlight === 0) drained?.();
          else setImmediate(feed);
        },
      });
    }
  };
  feed();
  await new Promise((r) => setTimeout(r, 2000)); // warm-up
  const batches0 = pool.stats.batches;
  const frames0 = pool.stats.frames;
  counting = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, o.seconds * 1000));
  counting = false;
  const secs = (performance.now() - t0) / 1000;
  const meanBatch = (pool.stats.frames - frames0) / Math.max(1, pool.stats.batches - batches0);
  stop = true;
  if (inFlight > 0) await new Promise<void>((r) => (drained = r));
  await pool.close();
  return { resultsPerSecond: round(done / secs, 1), meanBatch: round(meanBatch, 2) };
}

async function step(
  o: ThroughputOptions,
  sims: SimDevices,
  edge: ChildProcess,
  offered: number,
): Promise<ThroughputStep> {
  const fps = offered / sims.size;
  sims.start(fps);
  await new Promise((r) => setTimeout(r, 1500)); // settle
  sims.mark();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, o.seconds * 1000));
  const secs = (performance.now() - t0) / 1000;
  const results = sims.counts.results;
  const lat = sims.latencies.slice();
  const overloaded = sims.counts.overloaded;
  const skipped = sims.counts.skipped;
  const rss = await rssMiB(edge.pid!);
  sims.stop();
  const unanswered = await sims.drain(15_000);
  return {
    offeredPerSecond: round(offered, 1),
    fpsPerDevice: round(fps, 3),
    resultsPerSecond: round(results / secs, 1),
    p50Ms: round(percentile(lat, 50), 1),
    p99Ms: round(percentile(lat, 99), 1),
    overloaded,
    skipped,
    unanswered,
    edgeRssMiB: rss,
  };
}

/** Messages/s one QoS 1 subscriber receives from `publishers` QoS 1 publishers, each
 * keeping `window` messages unacknowledged, over `seconds`. */
export async function fanIn(
  url: string,
  payloads: readonly Buffer[],
  publishers: number,
  seconds: number,
): Promise<number> {
  const fleet = 'fanin';
  let received = 0;
  const sub = await rawClient(url, `fanin-sub-${process.pid}`, {
    onPacket: (p) => {
      if (p.cmd !== 'publish') return;
      received++;
      if (p.qos === 1) sub.write(mqttPacket.generate({ cmd: 'puback', messageId: p.messageId! }));
    },
  });
  sub.write(
    mqttPacket.generate({
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: [{ topic: deviceFilter('features', fleet), qos: 1 }],
    }),
  );
  await new Promise((r) => setTimeout(r, 300));
  const window = 8;
  let stop = false;
  const pubs: Socket[] = [];
  const starts: (() => void)[] = [];
  for (let i = 0; i < publishers; i++) {
    let mid = 0;
    let k = i;
    const topic = deviceTopic(fleet, `p${i}`, 'features');
    const send = () => {
      if (stop) return;
      mid = (mid % 65535) + 1;
      s.write(
        mqttPacket.generate({
          cmd: 'publish',
          topic,
          payload: payloads[k++ % payloads.length]!,
          qos: 1,
          messageId: mid,
          retain: false,
          dup: false,
        }),
      );
    };
    // each PUBACK lets the next message go: `window` unacknowledged per publisher
    const s = await rawClient(url, `fanin-pub-${process.pid}-${i}`, {
      onPacket: (p) => {
        if (p.cmd === 'puback') send();
      },
    });
    s.on('error', () => undefined);
    pubs.push(s);
    starts.push(() => {
      for (let w = 0; w < window; w++) send();
    });
  }
  for (const start of starts) start();
  await new Promise((r) => setTimeout(r, 1000)); // warm-up
  const r0 = received;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const rate = (received - r0) / ((performance.now() - t0) / 1000);
  stop = true;
  for (const s of pubs) s.destroy();
  sub.destroy();
  return round(rate, 1);
}

export async function benchThroughput(o: ThroughputOptions): Promise<ThroughputReport> {
  const log = o.log ?? (() => undefined);
  const frames = await sampleFrames(o.model, o.codec, o.point);
  const frameBytes = encodeFrame(frames[0]!).byteLength;
  log(`raw engine: ${o.workers} decoder processes, batches <= ${o.maxBatch}, ${o.seconds} s ...`);
  const raw = await rawEngine(o, frames);
  log(`raw engine: ${raw.resultsPerSecond} results/s (mean batch ${raw.meanBatch})`);

  const { child: edge, mqtt: url } = await startEdgeProcess([
    ...['--model', o.model, '--no-metrics', '--fleet', 'bench'],
    ...['--workers', String(o.workers), '--max-batch', String(o.maxBatch)],
    ...['--max-wait', String(o.maxWaitMs), '--max-queue', '1024'],
  ]);
  const steps: ThroughputStep[] = [];
  let fan: ThroughputReport['fanIn'];
  try {
    const sims = await SimDevices.connect(url, { fleet: 'bench', count: o.devices, frames });
    // warm-up (JIT, the decoders' first batches), not measured
    sims.start((0.3 * raw.resultsPerSecond) / sims.size);
    await new Promise((r) => setTimeout(r, 5000));
    sims.stop();
    await sims.drain(15_000);
    for (const share of o.loads) {
      const s = await step(o, sims, edge, share * raw.resultsPerSecond);
      steps.push(s);
      log(
        `offered ${s.offeredPerSecond}/s (${round(share * 100, 0)}% of raw): ${s.resultsPerSecond} results/s, ` +
          `p50 ${s.p50Ms} ms, p99 ${s.p99Ms} ms, overloaded ${s.overloaded}, unanswered ${s.unanswered}`,
      );
    }
    sims.close();

    const payloads = frames.map((f) => Buffer.from(encodeFrame(f)));
    const publishers = Math.min(o.devices, 100);
    const fanSecs = Math.max(3, Math.min(10, o.seconds));
    log(`fan-in: ${publishers} publishers, QoS 1, ${fanSecs} s, edge broker ...`);
    const edgeRate = await fanIn(url, payloads, publishers, fanSecs);
    const dir = await mkdtemp(join(tmpdir(), 'sf-fanin-'));
    const mosq = await startMosquitto(dir, 'max_inflight_messages 0\nmax_queued_messages 100000\n');
    let mosqRate: number;
    try {
      log(`fan-in: mosquitto ...`);
      mosqRate = await fanIn(mosq.url, payloads, publishers, fanSecs);
    } finally {
      mosq.proc.kill('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    }
    fan = {
      publishers,
      seconds: fanSecs,
      edgeMessagesPerSecond: edgeRate,
      mosquittoMessagesPerSecond: mosqRate,
      ratio: round(edgeRate / mosqRate, 3),
    };
    log(`fan-in: edge ${edgeRate}/s, mosquitto ${mosqRate}/s (ratio ${fan.ratio})`);
  } finally {
    edge.kill('SIGTERM');
  }
  const ok = steps.filter((s) => s.p99Ms < o.p99BoundMs && s.unanswered === 0);
  const best = ok.reduce<ThroughputStep | null>(
    (b, s) => (b === null || s.resultsPerSecond > b.resultsPerSecond ? s : b),
    null,
  );
  const { availableParallelism } = await import('node:os');
  return {
    machine: { cpus: availableParallelism(), node: process.version },
    model: o.model,
    codec: o.codec,
    point: o.point,
    frameBytes,
    devices: o.devices,
    workers: o.workers,
    maxBatch: o.maxBatch,
    maxWaitMs: o.maxWaitMs,
    raw,
    steps,
    best,
    p99BoundMs: o.p99BoundMs,
    ratioToRawEngine: best ? round(best.resultsPerSecond / raw.resultsPerSecond, 3) : 0,
    fanIn: fan,
  };
}

export function throughputTable(r: ThroughputReport): string {
  const lines = [
    `raw engine (no broker): ${r.raw.resultsPerSecond} results/s, mean batch ${r.raw.meanBatch}`,
    'offered/s  results/s  p50 ms  p99 ms  overloaded  skipped  unanswered  edge RSS MiB',
    ...r.steps.map(
      (s) =>
        `${String(s.offeredPerSecond).padStart(9)}  ${String(s.resultsPerSecond).padStart(9)}  ` +
        `${String(s.p50Ms).padStart(6)}  ${String(s.p99Ms).padStart(6)}  ${String(s.overloaded).padStart(10)}  ${String(s.skipped).padStart(7)}  ` +
        `${String(s.unanswered).padStart(10)}  ${String(s.edgeRssMiB).padStart(12)}`,
    ),
    `ratioToRawEngine ${r.ratioToRawEngine} (best step with p99 < ${r.p99BoundMs} ms: ${r.best ? `${r.best.resultsPerSecond} results/s` : 'none'}; goal >= 0.7)`,
    `broker fan-in, QoS 1, ${r.fanIn.publishers} publishers: edge ${r.fanIn.edgeMessagesPerSecond} msg/s, mosquitto ${r.fanIn.mosquittoMessagesPerSecond} msg/s, ratio ${r.fanIn.ratio} (goal >= 0.5)`,
  ];
  return lines.join('\n') + '\n';
}
