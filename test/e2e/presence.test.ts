/**
 * Presence and observability over real sockets: a killed agent process is marked offline
 * by its last will; a stale will cannot mark a live device offline; the edge's
 * Prometheus metrics and devices report; `splitfleet fleet status`.
 */
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { startEdge, type Edge } from '../../edge-broker/edge.js';
import { PROJECT_ROOT } from '../../core/paths.js';
import { deviceTopic, edgeTopic } from '../../core/wire/topics.js';
import type { DeviceStatus } from '../../core/wire/messages.js';
import { shippedModel } from '../helpers/model.js';
import { waitFor } from '../helpers/wait.js';

const cli = (args: string[]): ChildProcess =>
  spawn(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'cli', 'main.ts'), ...args], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });

/** A real agent process of fleet p on the test edge. */
const agentProc = (device: string, ...extra: string[]): ChildProcess =>
  cli(['agent', '--device', device, '--fleet', 'p', '--url', edge.url, ...extra]);

function output(p: ChildProcess): Promise<{ code: number | null; stdout: string }> {
  let stdout = '';
  p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  return new Promise((resolve) => p.on('close', (code) => resolve({ code, stdout })));
}

/** The value of the sample of `name` whose labels include `labels`, from Prometheus text. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries(
      [...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1]!, x[2]!]),
    );
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

let edge: Edge;
test.before(async () => {
  edge = await startEdge({
    bundles: [await shippedModel()],
    port: 0,
    wsPort: null,
    workers: 1,
    edgeId: 'edge-p',
    metricsPort: 0,
  });
});
test.after.always(() => edge?.close());

const view = (device: string) => edge.devices().find((d) => d.device === device);

test.serial(
  'a killed agent goes offline by its will; a stale will never marks a live device offline',
  async (t) => {
    const agent = agentProc('pi-1', '--loop', '--fps', '10');
    try {
      await waitFor(
        () => view('pi-1')?.online === true && (view('pi-1')?.frames ?? 0) >= 3,
        30_000,
      );
      const birth = view('pi-1')!;
      t.like(birth, { fleet: 'p', codec: 'split-q', point: 0, model: 'resnet9w05-cifar10@2' });
      agent.kill('SIGKILL');
      await waitFor(() => view('pi-1')?.online === false);
      t.is(view('pi-1')!.seq, birth.seq, 'the will carries the seq of its birth');

      // a live device, then a late will of an older connection: ignored
      const live = agentProc('pi-2', '--loop', '--fps', '5');
      try {
        await waitFor(() => view('pi-2')?.online === true);
        const seq = view('pi-2')!.seq!;
        const ops = await connectAsync(edge.url);
        const stale: DeviceStatus = { state: 'offline', seq: seq - 1, ts: Date.now() };
        await ops.publishAsync(deviceTopic('p', 'pi-2', 'status'), JSON.stringify(stale), {
          qos: 1,
        });
        await new Promise((r) => setTimeout(r, 300));
        t.true(view('pi-2')!.online, 'stale will ignored');
        await ops.endAsync();
      } finally {
        live.kill('SIGTERM');
        await output(live);
      }
      await waitFor(() => view('pi-2')?.online === false); // a clean stop publishes its death
    } finally {
      agent.kill('SIGKILL');
    }
  },
);

test.serial('Prometheus metrics, the devices report and fleet status', async (t) => {
  const agent = agentProc('pi-3', '--frames', '20', '--fps', '20');
  const done = output(agent);
  await waitFor(() => (view('pi-3')?.results ?? 0) >= 20);
  t.is((await done).code, 0);
  const res = await fetch(`${edge.metricsUrl}/metrics`);
  t.is(res.status, 200);
  const text = await res.text();
  const base = { fleet: 'p', edge: 'edge-p' };
  t.true((sample(text, 'splitfleet_frames_total', base) ?? 0) >= 20, text.slice(0, 300));
  t.true((sample(text, 'splitfleet_frame_bytes_total', base) ?? 0) > 20 * 1000);
  t.true(
    (sample(text, 'splitfleet_edge_latency_seconds_bucket', { ...base, le: '+Inf' }) ?? 0) >= 20,
  );
  t.true(
    (sample(text, 'splitfleet_results_total', {
      ...base,
      model: 'resnet9w05-cifar10@2',
      codec: 'split-q',
    }) ?? 0) >= 20,
  );
  t.is(typeof sample(text, 'splitfleet_devices_online', { edge: 'edge-p' }), 'number');
  t.is(sample(text, 'splitfleet_access_refused', { kind: 'connect', edge: 'edge-p' }), 0);
  const devices = (await (await fetch(`${edge.metricsUrl}/devices`)).json()) as {
    devices: { device: string }[];
  };
  t.true(devices.devices.some((d) => d.device === 'pi-3'));

  const status = cli(['fleet', 'status', '--url', edge.url, '--json', '--wait', '2500']);
  const out = await output(status);
  t.is(out.code, 0);
  const r = JSON.parse(out.stdout.trim().split('\n').at(-1)!) as {
    edges: string[];
    devices: { device: string; online: boolean; frames: number; edgeId: string }[];
  };
  t.deepEqual(r.edges, ['edge-p']);
  const pi3 = r.devices.find((d) => d.device === 'pi-3');
  t.like(pi3, { online: false, frames: 20, edgeId: 'edge-p' });
});

test.serial(
  "an edge serving every fleet reports each fleet's devices under that fleet only",
  async (t) => {
    const c = await connectAsync(edge.url);
    try {
      const online = (seq: number): DeviceStatus => ({ state: 'online', seq, ts: Date.now() });
      await c.publishAsync(deviceTopic('fa', 'cam-a', 'status'), JSON.stringify(online(1)), {
        qos: 1,
        retain: true,
      });
      await c.publishAsync(deviceTopic('fb', 'cam-b', 'status'), JSON.stringify(online(1)), {
        qos: 1,
        retain: true,
      });
      await waitFor(() => view('cam-a') !== undefined && view('cam-b') !== undefined);
      const reports = new Map<string, string[]>();
      c.on('message', (topic, payload) => {
        const r = JSON.parse(payload.toString()) as { devices: { device: string }[] };
        reports.set(
          topic,
          r.devices.map((d) => d.device),
        );
      });
      const of = (fleet: string) => edgeTopic(fleet, 'edge-p', 'devices');
      await c.subscribeAsync([of('fa'), of('fb')], { qos: 1 });
      await waitFor(
        () => reports.get(of('fa'))?.includes('cam-a') === true && reports.has(of('fb')),
      );
      t.false(reports.get(of('fa'))!.includes('cam-b'));
      await waitFor(() => reports.get(of('fb'))?.includes('cam-b') === true);
      t.false(reports.get(of('fb'))!.includes('cam-a'));
    } finally {
      await c.endAsync();
    }
  },
);
