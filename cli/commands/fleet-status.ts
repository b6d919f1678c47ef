/**
 * `splitfleet fleet status`: every device the edges see, from their retained devices
 * reports (`<base>/<fleet>/edge/<id>/devices`), each report checked before use.
 */
import Table from 'cli-table3';
import type { Command } from 'commander';
import { edgeTopic } from '../../core/wire/topics.js';
import type { DeviceView } from '../../edge-broker/fleet/monitor.js';
import { int, OptionValues } from '../args.js';
import { connectEdge, connectFlags, withConnection } from './fleet-jobs.js';

export interface DevicesReport {
  edgeId: string;
  ts: number;
  devices: DeviceView[];
}

type Fields = Record<string, unknown>;
const isObject = (v: unknown): v is Fields =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isStr = (v: unknown): v is string => typeof v === 'string';
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const orNull =
  <T>(is: (v: unknown) => v is T) =>
  (v: unknown): v is T | null =>
    v === null || is(v);

function deviceView(v: unknown): DeviceView | undefined {
  if (!isObject(v)) return undefined;
  const { fleet, device, online, seq, model, codec, point, configId } = v;
  const { framesPerSecond, bytesPerSecond, edgeLatencyMsP50, frames, results, errors, lastSeen } =
    v;
  if (!isStr(fleet) || !isStr(device) || typeof online !== 'boolean') return undefined;
  if (!orNull(isNum)(seq) || !orNull(isStr)(model) || !orNull(isStr)(codec)) return undefined;
  if (!orNull(isNum)(point) || !orNull(isStr)(configId)) return undefined;
  if (!isNum(framesPerSecond) || !isNum(bytesPerSecond) || !orNull(isNum)(edgeLatencyMsP50))
    return undefined;
  if (!isNum(frames) || !isNum(results) || !orNull(isNum)(lastSeen)) return undefined;
  if (!isObject(errors)) return undefined;
  const errorCounts: Record<string, number> = {};
  for (const [code, n] of Object.entries(errors)) {
    if (!isNum(n)) return undefined;
    errorCounts[code] = n;
  }
  return {
    fleet,
    device,
    online,
    seq,
    model,
    codec,
    point,
    configId,
    framesPerSecond,
    bytesPerSecond,
    edgeLatencyMsP50,
    frames,
    results,
    errors: errorCounts,
    lastSeen,
  };
}

/** An edge's devices report, or undefined when the message is not one. */
export function parseDevicesReport(payload: Uint8Array | string): DevicesReport | undefined {
  let v: unknown;
  try {
    v = JSON.parse(typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isObject(v) || !isStr(v.edgeId) || !isNum(v.ts) || !Array.isArray(v.devices))
    return undefined;
  const devices: DeviceView[] = [];
  for (const d of v.devices) {
    const view = deviceView(d);
    if (!view) return undefined;
    devices.push(view);
  }
  return { edgeId: v.edgeId, ts: v.ts, devices };
}

function table(devices: (DeviceView & { edgeId: string })[]): string {
  const t = new Table({
    head: [
      'fleet',
      'device',
      'online',
      'model',
      'codec',
      'point',
      'frames/s',
      'bytes/s',
      'edge ms p50',
      'errors',
      'last seen',
      'edge',
    ],
  });
  for (const d of devices) {
    const errors = Object.values(d.errors).reduce((a, b) => a + b, 0);
    t.push([
      d.fleet,
      d.device,
      d.online ? 'yes' : 'no',
      d.model ?? '-',
      d.codec ?? '-',
      d.point ?? '-',
      d.framesPerSecond,
      d.bytesPerSecond,
      d.edgeLatencyMsP50 ?? '-',
      errors,
      d.lastSeen ? new Date(d.lastSeen).toISOString() : '-',
      d.edgeId,
    ]);
  }
  return t.toString();
}

export function registerStatus(fleet: Command): void {
  withConnection(
    fleet
      .command('status')
      .description('every device the edges see: presence, model, codec, point, traffic, errors'),
  )
    .option('--fleet <id>', "only this fleet's edges ('+': all)", '+')
    .option(
      '--wait <ms>',
      "how long to collect the edges' retained reports",
      int(100, 60_000),
      1500,
    )
    .option('--json', 'one JSON object: {edges, devices}')
    .action(async (_o: unknown, c: Command) => {
      const raw = c.opts();
      const o = new OptionValues(raw, 'splitfleet fleet status');
      const client = await connectEdge(connectFlags(raw));
      const reports = new Map<string, DevicesReport>();
      client.on('message', (topic, payload) => {
        const r = parseDevicesReport(payload);
        if (r) reports.set(topic, r);
      });
      await client.subscribeAsync(edgeTopic(o.str('fleet'), '+', 'devices'), { qos: 1 });
      await new Promise((r) => setTimeout(r, o.num('wait')));
      await client.endAsync();
      const devices = [...reports.values()].flatMap((r) =>
        r.devices.map((d) => ({ ...d, edgeId: r.edgeId })),
      );
      if (o.flag('json')) {
        const edges = [...reports.values()].map((r) => r.edgeId);
        process.stdout.write(JSON.stringify({ edges, devices }) + '\n');
        return;
      }
      process.stdout.write(
        `${reports.size} edge(s), ${devices.length} device(s)\n${table(devices)}\n`,
      );
    });
}
