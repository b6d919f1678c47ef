/**
 * `splitfleet fleet rollout | rollback | jobs | models`: operator commands sent to an
 * edge over MQTT (core/wire/rpc.ts: `.../edge/<id>/request/<op>` -> `.../response/<op>`),
 * and the one connection helper every fleet command uses.
 */
import { randomUUID } from 'node:crypto';
import { ROLLOUT_DEFAULTS } from '../../edge-broker/fleet/rollout-spec.js';
import { readFile } from 'node:fs/promises';
import Table from 'cli-table3';
import { Command } from 'commander';
import { brokerUrl, int, list, OptionValues, positive, share } from '../args.js';
import { connectAsync, type MqttClient } from 'mqtt';
import { dataOf, request, type EdgeOp } from '../../core/wire/rpc.js';
import { edgeOpTopic, edgeStatusTopic, loginClientId, parseTopic } from '../../core/wire/topics.js';
import { DEFAULT_FLEET } from './shared.js';
import type { RolloutSpec } from '../../edge-broker/fleet/rollout.js';
import type { RegistryListing } from '../../edge-broker/fleet/registry.js';

export interface ConnectFlags {
  url: string;
  username?: string;
  password?: string;
  ca?: string;
}

/** The connection flags every fleet command takes. */
export function withConnection(c: Command): Command {
  return c
    .option(
      '--url <url>',
      'edge broker URL (mqtt://, mqtts://, ws://, wss://)',
      brokerUrl,
      'mqtt://127.0.0.1:1883',
    )
    .option('--username <u>', 'MQTT username (an operator; a dashboard may only read)')
    .option('--password <p>', 'MQTT password (or SPLITFLEET_PASSWORD)')
    .option('--ca <file>', 'PEM certificate(s) to trust for mqtts://');
}

/** The values of withConnection's flags. */
export function connectFlags(raw: Readonly<Record<string, unknown>>): ConnectFlags {
  const o = new OptionValues(raw, 'splitfleet fleet');
  return {
    url: o.str('url'),
    username: o.optStr('username'),
    password: o.optStr('password'),
    ca: o.optStr('ca'),
  };
}

export async function connectEdge(o: ConnectFlags): Promise<MqttClient> {
  return connectAsync(o.url, {
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    // a login's client id is `<user>:<suffix>` (the broker binds ids to logins)
    clientId: o.username ? loginClientId(o.username, `cli-${randomUUID().slice(0, 8)}`) : undefined,
    username: o.username,
    password: o.password ?? process.env.SPLITFLEET_PASSWORD,
    ca: o.ca ? await readFile(o.ca) : undefined,
  });
}

/** Send one request to an edge and wait for its answer's data (unchecked: check it before
 * use); throws with the edge's error. */
export async function edgeRequest<T = unknown>(
  client: MqttClient,
  where: { fleet: string; edge: string },
  op: EdgeOp,
  body: Record<string, unknown>,
  timeoutMs = 10_000,
): Promise<T> {
  const topic = edgeOpTopic(where.fleet, where.edge, 'request', op);
  return dataOf<T>(await request(client, topic, body, timeoutMs), op);
}

type Fields = Record<string, unknown>;
const isObject = (v: unknown): v is Fields =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isStr = (v: unknown): v is string => typeof v === 'string';
const isNumOrNull = (v: unknown): v is number | null => v === null || isNum(v);

/** What these commands read of a rollout job, checked: the edge's answer is data from
 * the network. */
interface JobView {
  jobId: string;
  state: string;
  model: string;
  wave: number;
  waves: number;
  deployed: number;
  targets: number;
  reason: string | null;
  updated: number;
  health: { device: string; errorRate: number; confidence: number | null; p95: number | null }[];
}

function jobView(v: unknown): JobView {
  const bad = (): never => {
    throw new Error(`the edge answered with something that is not a rollout job`);
  };
  if (!isObject(v) || !isObject(v.spec) || !Array.isArray(v.health)) return bad();
  const { jobId, state, wave, waves, deployed, targets, reason, updated } = v;
  const model = v.spec.model;
  if (!isStr(jobId) || !isStr(state) || !isStr(model) || !isNum(wave) || !isNum(updated))
    return bad();
  if (!Array.isArray(waves) || !Array.isArray(deployed) || !Array.isArray(targets)) return bad();
  if (reason !== null && !isStr(reason)) return bad();
  const health = v.health.map((h: unknown) => {
    if (!isObject(h) || !isStr(h.device) || !isNum(h.errorRate)) return bad();
    if (!isNumOrNull(h.confidence) || !isNumOrNull(h.latencyMsP95)) return bad();
    return {
      device: h.device,
      errorRate: h.errorRate,
      confidence: h.confidence,
      p95: h.latencyMsP95,
    };
  });
  return {
    jobId,
    state,
    model,
    wave,
    waves: waves.length,
    deployed: deployed.length,
    targets: targets.length,
    reason,
    updated,
    health,
  };
}

function listingsOf(v: unknown): RegistryListing[] {
  if (!Array.isArray(v)) throw new Error('the edge answered with something that is not a list');
  return v.map((m: unknown) => {
    if (
      !isObject(m) ||
      !isStr(m.ref) ||
      !isStr(m.kind) ||
      typeof m.staged !== 'boolean' ||
      !isStr(m.manifestSha256) ||
      !Array.isArray(m.files) ||
      !m.files.every(isStr)
    ) {
      throw new Error('the edge answered with something that is not a registry listing');
    }
    return {
      ref: m.ref,
      kind: m.kind,
      staged: m.staged,
      manifestSha256: m.manifestSha256,
      files: m.files.filter(isStr),
    };
  });
}

interface EdgeFlags extends ConnectFlags {
  /** undefined: the fleet the edge says it runs (its retained status). */
  fleet: string | undefined;
  edge: string;
  json: boolean;
}

function edgeFlags(raw: Readonly<Record<string, unknown>>): EdgeFlags {
  const o = new OptionValues(raw, 'splitfleet fleet');
  return {
    ...connectFlags(raw),
    fleet: o.optStr('fleet'),
    edge: o.str('edge'),
    json: o.flag('json'),
  };
}

/** How long to wait for an edge's retained status when no --fleet is given. */
const FIND_FLEET_MS = 2000;

/** The fleet edge `edge` runs: the fleet of its retained online status (every edge
 * publishes it under the fleet it serves); DEFAULT_FLEET when none comes in time. */
export async function fleetOfEdge(client: MqttClient, edge: string): Promise<string> {
  const filter = edgeStatusTopic('+', edge);
  let found: (fleet: string) => void = () => undefined;
  const online = new Promise<string>((resolve) => (found = resolve));
  const onMessage = (topic: string, payload: Buffer) => {
    const t = parseTopic(topic);
    if (!t || t.kind !== 'edge' || t.edgeId !== edge) return;
    try {
      const v: unknown = JSON.parse(payload.toString('utf8'));
      if (isObject(v) && v.state === 'online') found(t.fleet);
    } catch {
      // not a status: ignored
    }
  };
  client.on('message', onMessage);
  let timer: NodeJS.Timeout | undefined;
  try {
    await client.subscribeAsync(filter, { qos: 1 });
    const late = new Promise<string>(
      (r) => (timer = setTimeout(() => r(DEFAULT_FLEET), FIND_FLEET_MS)),
    );
    return await Promise.race([online, late]);
  } finally {
    clearTimeout(timer);
    client.removeListener('message', onMessage);
    await client.unsubscribeAsync(filter).catch(() => undefined);
  }
}

/** Connect to the edge the flags name, run `fn`, always disconnect. */
async function atEdge(
  o: EdgeFlags,
  fn: (
    request: (op: EdgeOp, body: Fields, timeoutMs?: number) => Promise<unknown>,
  ) => Promise<void>,
): Promise<void> {
  const client = await connectEdge(o);
  try {
    const where = { fleet: o.fleet ?? (await fleetOfEdge(client, o.edge)), edge: o.edge };
    await fn((op, body, timeoutMs) => edgeRequest(client, where, op, body, timeoutMs));
  } finally {
    await client.endAsync();
  }
}

const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'ROLLED_BACK']);

function jobLine(j: JobView): string {
  return `${j.jobId} ${j.state} ${j.model} wave ${j.wave + 1}/${j.waves} (${j.deployed}/${j.targets} devices)${j.reason ? `: ${j.reason}` : ''}`;
}

function printJobs(jobs: JobView[]): void {
  const t = new Table({
    // colours only on a terminal
    ...(process.stdout.isTTY ? {} : { style: { head: [], border: [] } }),
    head: ['job', 'state', 'model', 'wave', 'devices', 'health', 'reason', 'updated'],
  });
  for (const j of jobs) {
    const health = j.health
      .map((h) => `${h.device}: err ${h.errorRate} conf ${h.confidence ?? '-'} p95 ${h.p95 ?? '-'}`)
      .join('\n');
    t.push([
      j.jobId,
      j.state,
      j.model,
      `${j.wave + 1}/${j.waves}`,
      `${j.deployed}/${j.targets}`,
      health || '-',
      j.reason ?? '-',
      new Date(j.updated).toISOString(),
    ]);
  }
  process.stdout.write(`${jobs.length} job(s)\n${t.toString()}\n`);
}

/** The spec `fleet rollout` sends, from its flags. */
function rolloutSpec(raw: Readonly<Record<string, unknown>>): RolloutSpec {
  const o = new OptionValues(raw, 'splitfleet fleet rollout');
  return {
    model: o.str('model'),
    devices: o.optStrs('devices'),
    groups: o.optStrs('groups'),
    percent: o.optNum('percent'),
    waves: o.strs('waves').map((w) => (w.endsWith('%') ? w : Number(w))),
    gates: {
      maxErrorRate: o.num('maxErrorRate'),
      maxLatencyMs: o.optNum('maxLatencyMs') ?? null,
      minConfidence: o.optNum('minConfidence') ?? null,
      maxConfidenceDrop: o.num('maxConfidenceDrop'),
    },
    minFrames: o.num('minFrames'),
    soakMs: o.num('soakMs'),
    applyTimeoutMs: o.num('applyTimeoutMs'),
    autoRollback: o.flag('autoRollback'),
  };
}

export function addJobCommands(fleet: Command): void {
  const target = (c: Command) =>
    withConnection(c)
      .option('--fleet <id>', `fleet id (default: the fleet the edge runs, else ${DEFAULT_FLEET})`)
      .option('--edge <id>', 'edge id', 'edge-1');

  target(fleet.command('rollout'))
    .description('roll a model of the edge registry out in waves, with health gates and rollback')
    .requiredOption('--model <name@version>', 'bundle of the edge registry (`fleet models`)')
    .option('--devices <ids>', 'target devices (comma-separated)', list)
    .option('--groups <ids>', 'target groups (comma-separated)', list)
    .option('--percent <n>', 'only this percentage of the targets', positive)
    .option(
      '--waves <sizes>',
      'cumulative wave sizes: counts or shares',
      list,
      ROLLOUT_DEFAULTS.waves.map(String),
    )
    .option(
      '--max-error-rate <r>',
      'gate: errors / frames on the new model',
      share,
      ROLLOUT_DEFAULTS.gates.maxErrorRate,
    )
    .option('--max-latency-ms <ms>', 'gate: p95 edge latency', positive)
    .option('--min-confidence <c>', 'gate: mean top-1 score', share)
    .option(
      '--max-confidence-drop <d>',
      'gate: drop of the mean top-1 score',
      share,
      ROLLOUT_DEFAULTS.gates.maxConfidenceDrop,
    )
    .option(
      '--min-frames <n>',
      'frames per wave device before the gates are read',
      int(1),
      ROLLOUT_DEFAULTS.minFrames,
    )
    .option('--soak-ms <ms>', 'longest wait for those frames', int(1), ROLLOUT_DEFAULTS.soakMs)
    .option(
      '--apply-timeout-ms <ms>',
      'longest wait for a device to apply',
      int(1),
      ROLLOUT_DEFAULTS.applyTimeoutMs,
    )
    .option('--no-auto-rollback', 'leave a failed wave as it is')
    .option('--wait', 'follow the job until it ends; exit 0 only if it succeeded')
    .option('--json', 'print the job as JSON')
    .action(async (_o: unknown, c: Command) => {
      const raw = c.opts();
      const o = edgeFlags(raw);
      const wait = new OptionValues(raw, 'splitfleet fleet rollout').flag('wait');
      const spec = rolloutSpec(raw);
      await atEdge(o, async (request) => {
        let data = await request('rollout', { spec });
        let job = jobView(data);
        process.stdout.write((o.json ? JSON.stringify(data) : `queued ${jobLine(job)}`) + '\n');
        if (!wait) return;
        let last = '';
        while (!TERMINAL.has(job.state)) {
          await new Promise((r) => setTimeout(r, 1000));
          const jobs = await request('jobs', {});
          if (!Array.isArray(jobs)) throw new Error('the edge answered jobs with no list');
          const now: unknown = jobs.find((j: unknown) => jobView(j).jobId === job.jobId);
          if (now !== undefined) [data, job] = [now, jobView(now)];
          const line = jobLine(job);
          if (line !== last && !o.json) process.stdout.write(`${line}\n`);
          last = line;
        }
        if (o.json) process.stdout.write(JSON.stringify(data) + '\n');
        process.exitCode = job.state === 'SUCCEEDED' ? 0 : 1;
      });
    });

  target(fleet.command('rollback'))
    .description('roll a job back: its devices return to the configs they had before')
    .argument('<job>', 'job id (`fleet jobs`)')
    .option('--json', 'print the job as JSON')
    .action(async (jobId: string, _o: unknown, c: Command) => {
      const o = edgeFlags(c.opts());
      await atEdge(o, async (request) => {
        const data = await request('rollback', { jobId }, 180_000);
        const job = jobView(data);
        process.stdout.write((o.json ? JSON.stringify(data) : jobLine(job)) + '\n');
        process.exitCode = job.state === 'ROLLED_BACK' ? 0 : 1;
      });
    });

  target(fleet.command('jobs'))
    .description('rollout jobs of an edge and their states')
    .option('--json', 'print the jobs as JSON')
    .action(async (_o: unknown, c: Command) => {
      const o = edgeFlags(c.opts());
      await atEdge(o, async (request) => {
        const data = await request('jobs', {});
        if (!Array.isArray(data)) throw new Error('the edge answered jobs with no list');
        const jobs = data.map(jobView);
        if (o.json) process.stdout.write(JSON.stringify(data) + '\n');
        else printJobs(jobs);
      });
    });

  target(fleet.command('models'))
    .description('the bundles an edge serves to devices over the air')
    .option('--json', 'print them as JSON')
    .action(async (_o: unknown, c: Command) => {
      const o = edgeFlags(c.opts());
      await atEdge(o, async (request) => {
        const models = listingsOf(await request('models', {}));
        if (o.json) process.stdout.write(JSON.stringify(models) + '\n');
        else
          for (const m of models)
            process.stdout.write(
              `${m.ref} ${m.kind}${m.staged ? ' (staged)' : ''} manifest sha256 ${m.manifestSha256} files ${m.files.join(' ')}\n`,
            );
      });
    });

  target(fleet.command('set'))
    .description(
      "change a device's or a group's codec, point or fps on a running edge (checked as the fleet file is; kept in <fleet-file>.overrides.json)",
    )
    .option('--device <id>', 'the device to change')
    .option('--group <id>', 'the group to change')
    .option('--codec <name>', 'codec')
    .option('--point <n>', 'operating point', int(0, 255))
    .option('--fps <n>', 'frames per second', positive)
    .option('--unset <settings>', 'remove these overrides (comma-separated: codec,point,fps)', list)
    .option('--json', 'print the answer as JSON')
    .action(async (_o: unknown, c: Command) => {
      const raw = c.opts();
      const o = edgeFlags(raw);
      const v = new OptionValues(raw, 'splitfleet fleet set');
      const device = v.optStr('device');
      const group = v.optStr('group');
      if ((device === undefined) === (group === undefined))
        throw new Error('name exactly one of --device and --group');
      const set: Record<string, string | number | null> = {};
      for (const k of v.optStrs('unset') ?? []) {
        if (!['codec', 'point', 'fps'].includes(k))
          throw new Error(
            `--unset: unknown setting ${JSON.stringify(k)}; settings: codec, point, fps`,
          );
        set[k] = null;
      }
      const codec = v.optStr('codec');
      const point = v.optNum('point');
      const fps = v.optNum('fps');
      if (codec !== undefined) set.codec = codec;
      if (point !== undefined) set.point = point;
      if (fps !== undefined) set.fps = fps;
      if (Object.keys(set).length === 0) throw new Error('give --codec, --point, --fps or --unset');
      await atEdge(o, async (request) => {
        const data = await request('set-config', {
          ...(device !== undefined ? { device } : { group }),
          set,
        });
        if (
          !isObject(data) ||
          !Array.isArray(data.devices) ||
          !data.devices.every(isStr) ||
          !(data.persisted === null || isStr(data.persisted))
        )
          throw new Error('the edge answered set-config with something that is not its answer');
        process.stdout.write(
          o.json
            ? JSON.stringify(data) + '\n'
            : `published to ${data.devices.length} device(s): ${data.devices.join(', ') || '-'}; ${data.persisted ? `kept in ${data.persisted}` : 'not kept (the edge keeps it in memory)'}\n`,
        );
      });
    });
}
