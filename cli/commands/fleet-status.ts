/**
 * `splitfleet fleet status`: every device the edges see, from their retained devices
 * reports (`<base>/<fleet>/edge/<id>/devices`), each report checked before use.
 */
import Table from 'cli-table3';
import type { Command } from 'commander';
import { edgeTopic } from '../../core/wire/topics.js';
import { parseSettings } from '../../core/wire/messages.js';
import type { DeviceView, RunningConfig, WantedConfig } from '../../edge-broker/fleet/monitor.js';
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

const STATES = ['online', 'offline', 'never seen'] as const;

function wantedOf(v: unknown): WantedConfig | null | undefined {
  if (v === null) return null;
  if (!isObject(v) || !isStr(v.configId) || !orNull(isStr)(v.group)) return undefined;
  const settings = parseSettings(v.settings);
  if (!settings || !Array.isArray(v.overridden) || !v.overridden.every(isStr)) return undefined;
  return {
    configId: v.configId,
    group: v.group,
    settings,
    overridden: v.overridden.filter(isStr),
  };
}

function runningOf(v: unknown): RunningConfig | null | undefined {
  if (v === null) return null;
  if (!isObject(v)) return undefined;
  const { configId, model, codec, point } = v;
  if (!orNull(isStr)(configId) || !orNull(isStr)(model) || !orNull(isStr)(codec)) return undefined;
  if (!orNull(isNum)(point)) return undefined;
  return { configId, model, codec, point };
}

function deviceView(v: unknown): DeviceView | undefined {
  if (!isObject(v)) return undefined;
  const { fleet, device, state, online, inFleetFile, seq, model, codec, point, configId } = v;
  const { framesPerSecond, bytesPerSecond, edgeLatencyMsP50, frames, results, errors, lastSeen } =
    v;
  const { refused, refusedConfigId } = v;
  if (!isStr(fleet) || !isStr(device) || typeof online !== 'boolean') return undefined;
  if (!STATES.some((x) => x === state) || typeof inFleetFile !== 'boolean') return undefined;
  if (!orNull(isNum)(seq) || !orNull(isStr)(model) || !orNull(isStr)(codec)) return undefined;
  if (!orNull(isNum)(point) || !orNull(isStr)(configId)) return undefined;
  if (!isNum(framesPerSecond) || !isNum(bytesPerSecond) || !orNull(isNum)(edgeLatencyMsP50))
    return undefined;
  if (!isNum(frames) || !isNum(results) || !orNull(isNum)(lastSeen)) return undefined;
  if (!orNull(isStr)(refused) || !orNull(isStr)(refusedConfigId)) return undefined;
  const wanted = wantedOf(v.wanted);
  const running = runningOf(v.running);
  if (wanted === undefined || running === undefined) return undefined;
  if (!isObject(errors)) return undefined;
  const errorCounts: Record<string, number> = {};
  for (const [code, n] of Object.entries(errors)) {
    if (!isNum(n)) return undefined;
    errorCounts[code] = n;
  }
  return {
    fleet,
    device,
    state: state as DeviceView['state'],
    online,
    inFleetFile,
    wanted,
    running,
    refused: refused === null ? null : refused.slice(0, 1024),
    refusedConfigId,
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

/** codec/point @ fps of a wanted config, its id, and which settings an operator set. */
function wantedCell(w: WantedConfig | null): string {
  if (!w) return '-';
  const s = w.settings;
  const set = w.overridden.length ? `\noverride: ${w.overridden.join(', ')}` : '';
  return `${s.model}\n${s.codec} point ${s.point} @ ${s.fps} fps\n${w.configId}${set}`;
}

function runningCell(r: RunningConfig | null, wanted: WantedConfig | null): string {
  if (!r) return '-';
  const same = wanted !== null && r.configId === wanted.configId ? ' (= wanted)' : '';
  return `${r.model ?? '-'}\n${r.codec ?? '-'} point ${r.point ?? '-'}\n${r.configId ?? 'start-up flags'}${same}`;
}

function table(devices: (DeviceView & { edgeId: string })[]): string {
  const t = new Table({
    // colours only on a terminal
    ...(process.stdout.isTTY ? {} : { style: { head: [], border: [] } }),
    head: [
      'fleet',
      'device',
      'state',
      'wanted',
      'running',
      'refused',
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
      d.state,
      wantedCell(d.wanted),
      runningCell(d.running, d.wanted),
      d.refused ?? '-',
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
      .description(
        'every device of the fleet files and every device seen: presence, the config wanted and running, refusals, traffic, errors',
      ),
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
      // an edge serving several fleets sends one report per fleet
      const edges = [...new Set([...reports.values()].map((r) => r.edgeId))];
      if (o.flag('json')) {
        process.stdout.write(JSON.stringify({ edges, devices }) + '\n');
        return;
      }
      process.stdout.write(
        `${edges.length} edge(s), ${devices.length} device(s)\n${table(devices)}\n`,
      );
    });
}
