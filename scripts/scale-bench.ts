/**
 * One edge node vs two Aedes nodes over Redis vs mosquitto with `$share` decoder workers,
 * under the same load (`npm run scale-bench -- [devices] [fps] [seconds]`, default 40 10
 * 20): simulated devices (bench/sim-devices.ts) replay real SplitFleet frames at QoS 1.
 * Each setup gets two decoder processes in all. Prints per setup results/s and the
 * device-side latency p50/p99; for the cluster also the p50 seen by a subscriber on node
 * B for devices on node A (results crossing nodes) and on node B (local). JSON last.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqttPacket from 'mqtt-packet';
import { PROJECT_ROOT } from '../core/paths.js';
import { deviceFilter, parseTopic } from '../core/wire/topics.js';
import { parseResult } from '../core/wire/messages.js';
import { percentile, round } from '../core/util/stats.js';
import { rawClient, startEdgeProcess } from '../bench/connections.js';
import { startMosquitto } from '../bench/mosquitto.js';
import { sampleFrames, SimDevices } from '../bench/sim-devices.js';
import { startRedis } from '../test/helpers/redis.js';

const [devices = 40, fps = 10, seconds = 20] = process.argv.slice(2).map(Number);
const FLEET = 'scale';
const MODEL = 'splitfleet-cifar10';
const frames = await sampleFrames(MODEL, 'splitfleet', 0);

interface Row {
  setup: string;
  offeredPerSecond: number;
  resultsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  overloaded: number;
  unanswered: number;
  crossNodeP50Ms?: number;
  localP50Ms?: number;
}

/** Run `groups` of devices (each on its own broker URL) for `seconds` at `fps`. */
async function drive(setup: string, urls: string[]): Promise<Row> {
  const per = Math.ceil(devices / urls.length);
  const groups = await Promise.all(
    urls.map((url, g) =>
      SimDevices.connect(url, { fleet: FLEET, count: per, frames, prefix: `g${g}-` }),
    ),
  );
  for (const s of groups) s.start(fps);
  await new Promise((r) => setTimeout(r, 2000)); // settle
  for (const s of groups) s.mark();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const secs = (performance.now() - t0) / 1000;
  const lat = groups.flatMap((s) => s.latencies);
  const sum = (k: 'results' | 'overloaded') => groups.reduce((n, s) => n + s.counts[k], 0);
  const results = sum('results');
  const overloaded = sum('overloaded');
  for (const s of groups) s.stop();
  let unanswered = 0;
  for (const s of groups) unanswered += await s.drain(15_000);
  for (const s of groups) s.close();
  const row: Row = {
    setup,
    offeredPerSecond: per * urls.length * fps,
    resultsPerSecond: round(results / secs, 1),
    p50Ms: round(percentile(lat, 50), 1),
    p99Ms: round(percentile(lat, 99), 1),
    overloaded,
    unanswered,
  };
  console.log(JSON.stringify(row));
  return row;
}

/** A subscriber on `url` to every device's results: latency by device group, from the
 * frame's capture time (ms clock of this process). */
async function observer(url: string) {
  const byGroup = new Map<string, number[]>();
  const sock = await rawClient(url, `scale-observer-${process.pid}`, {
    onPacket: (p) => {
      if (p.cmd !== 'publish') return;
      const t = parseTopic(p.topic);
      const device = t?.kind === 'device' ? t.deviceId : '';
      const r = parseResult(p.payload);
      if (!r) return;
      const g = device.split('-')[0]!;
      if (!byGroup.has(g)) byGroup.set(g, []);
      byGroup.get(g)!.push(Date.now() - r.captureTs);
    },
  });
  sock.write(
    mqttPacket.generate({
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: [{ topic: deviceFilter('result', FLEET), qos: 0 }],
    }),
  );
  return { byGroup, close: () => sock.destroy() };
}

const kill = (c: ChildProcess) =>
  new Promise<void>((r) => {
    if (c.exitCode !== null) return r();
    c.once('exit', () => r());
    c.kill('SIGTERM');
  });
const edgeArgs = (workers: number) => [
  ...['--model', MODEL, '--no-metrics', '--fleet', FLEET, '--workers', String(workers)],
];
const rows: Row[] = [];

// 1. one node, two decoder processes
{
  const e = await startEdgeProcess(edgeArgs(2), [], { built: true });
  rows.push(await drive('one edge node (2 decoder processes)', [e.mqtt]));
  await kill(e.child);
}

// 2. two nodes over Redis, one decoder process each; devices split between them
{
  const redis = await startRedis();
  const a = await startEdgeProcess(
    [...edgeArgs(1), '--redis', redis.url, '--edge-id', 'node-a'],
    [],
    {
      built: true,
    },
  );
  const b = await startEdgeProcess(
    [...edgeArgs(1), '--redis', redis.url, '--edge-id', 'node-b'],
    [],
    {
      built: true,
    },
  );
  const obs = await observer(b.mqtt);
  const row = await drive('two edge nodes over Redis (1 decoder process each)', [a.mqtt, b.mqtt]);
  row.crossNodeP50Ms = round(percentile(obs.byGroup.get('g0') ?? [], 50), 1);
  row.localP50Ms = round(percentile(obs.byGroup.get('g1') ?? [], 50), 1);
  console.log(
    `observer on node B: p50 ${row.crossNodeP50Ms} ms for devices on node A, ${row.localP50Ms} ms for devices on B`,
  );
  rows.push(row);
  obs.close();
  await kill(a.child);
  await kill(b.child);
  await redis.stop();
}

// 3. mosquitto with two `splitfleet worker` processes sharing the frames
{
  const dir = await mkdtemp(join(tmpdir(), 'sf-scale-'));
  const m = await startMosquitto(dir);
  const workers = ['w1', 'w2'].map((id) =>
    spawn(
      process.execPath,
      [
        join(PROJECT_ROOT, 'dist', 'cli', 'main.js'),
        'worker',
        ...['--url', m.url, '--id', id, '--fleet', FLEET, '--model', MODEL],
      ],
      { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, LOG_LEVEL: 'warn' } },
    ),
  );
  await Promise.all(
    workers.map(
      (w) =>
        new Promise<void>((r) => {
          let out = '';
          w.stdout!.on('data', (d: Buffer) => {
            out += d.toString();
            if (out.includes(' in group ')) r();
          });
        }),
    ),
  );
  rows.push(await drive('mosquitto + 2 share workers ($share)', [m.url]));
  await Promise.all(workers.map(kill));
  m.proc.kill('SIGTERM');
  await rm(dir, { recursive: true, force: true });
}
console.log(JSON.stringify({ devices, fps, seconds, model: MODEL, rows }));
process.exit(0);
