/**
 * `splitfleet fleet rollout | rollback | jobs | models`: operator commands sent to an
 * edge over MQTT (`.../edge/<id>/request/<op>` -> `.../response/<op>`), and the one
 * connection helper every fleet command uses.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import Table from 'cli-table3';
import { Command } from 'commander';
import { int, list, positive, share } from '../args.js';
import { connectAsync, type MqttClient } from 'mqtt';
import type { OpResponse } from '../../core/wire/messages.js';
import { edgeOpTopic, loginClientId } from '../../core/wire/topics.js';
import type { RolloutJob, RolloutSpec } from '../../edge-broker/fleet/rollout.js';
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
    .option('--url <url>', 'edge broker URL', 'mqtt://127.0.0.1:1883')
    .option('--username <u>', 'MQTT username (an operator; a dashboard may only read)')
    .option('--password <p>', 'MQTT password (or SPLITFLEET_PASSWORD)')
    .option('--ca <file>', 'PEM certificate(s) to trust for mqtts://');
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

/** Send one request to an edge and wait for its answer; throws with the edge's error. */
export async function edgeRequest<T>(
  client: MqttClient,
  where: { fleet: string; edge: string },
  op: string,
  body: Record<string, unknown>,
  timeoutMs = 10_000,
): Promise<T> {
  const id = randomUUID();
  const responseTopic = edgeOpTopic(where.fleet, where.edge, 'response', op);
  let onMessage: (topic: string, payload: Buffer) => void = () => undefined;
  let timer: NodeJS.Timeout | undefined;
  const answer = new Promise<OpResponse<T>>((resolve, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer from edge ${where.edge} to ${op} in ${timeoutMs} ms`)),
      timeoutMs,
    );
    onMessage = (topic, payload) => {
      if (topic !== responseTopic) return;
      try {
        const r = JSON.parse(payload.toString('utf8')) as OpResponse<T>;
        if (r.id === id) resolve(r);
      } catch {
        // not an answer
      }
    };
    client.on('message', onMessage);
  });
  try {
    await client.subscribeAsync(responseTopic, { qos: 1 });
    await client.publishAsync(
      edgeOpTopic(where.fleet, where.edge, 'request', op),
      JSON.stringify({ ...body, id }),
      { qos: 1 },
    );
    const r = await answer;
    if (r.status !== 'ok') throw new Error(r.error ?? `${op} failed`);
    return r.data as T;
  } finally {
    clearTimeout(timer);
    client.off('message', onMessage);
    answer.catch(() => undefined);
  }
}

type EdgeFlags = ConnectFlags & { fleet: string; edge: string };

/** Connect to the edge the flags name, run `fn`, always disconnect. */
async function atEdge(
  o: EdgeFlags,
  fn: (
    request: <T>(op: string, body: Record<string, unknown>, timeoutMs?: number) => Promise<T>,
  ) => Promise<void>,
): Promise<void> {
  const client = await connectEdge(o);
  try {
    const where = { fleet: o.fleet, edge: o.edge };
    await fn((op, body, timeoutMs) => edgeRequest(client, where, op, body, timeoutMs));
  } finally {
    await client.endAsync();
  }
}

const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'ROLLED_BACK']);

function jobLine(j: RolloutJob): string {
  return `${j.jobId} ${j.state} ${j.spec.model} wave ${j.wave + 1}/${j.waves.length} (${j.deployed.length}/${j.targets.length} devices)${j.reason ? `: ${j.reason}` : ''}`;
}

function printJobs(jobs: RolloutJob[]): void {
  const t = new Table({
    head: ['job', 'state', 'model', 'wave', 'devices', 'health', 'reason', 'updated'],
  });
  for (const j of jobs) {
    const health = j.health
      .map(
        (h) =>
          `${h.device}: err ${h.errorRate} conf ${h.confidence ?? '-'} p95 ${h.latencyMsP95 ?? '-'}`,
      )
      .join('\n');
    t.push([
      j.jobId,
      j.state,
      j.spec.model,
      `${j.wave + 1}/${j.waves.length}`,
      `${j.deployed.length}/${j.targets.length}`,
      health || '-',
      j.reason ?? '-',
      new Date(j.updated).toISOString(),
    ]);
  }
  process.stdout.write(`${jobs.length} job(s)\n${t.toString()}\n`);
}

export function addJobCommands(fleet: Command): void {
  const target = (c: Command) =>
    withConnection(c)
      .option('--fleet <id>', 'fleet id', 'default')
      .option('--edge <id>', 'edge id', 'edge-1');

  target(fleet.command('rollout'))
    .description('roll a model of the edge registry out in waves, with health gates and rollback')
    .requiredOption('--model <name@version>', 'bundle of the edge registry (`fleet models`)')
    .option('--devices <ids>', 'target devices (comma-separated)', list)
    .option('--groups <ids>', 'target groups (comma-separated)', list)
    .option('--percent <n>', 'only this percentage of the targets', positive)
    .option('--waves <sizes>', 'cumulative wave sizes: counts or shares', list, ['1', '100%'])
    .option('--max-error-rate <r>', 'gate: errors / frames on the new model', share, 0.05)
    .option('--max-latency-ms <ms>', 'gate: p95 edge latency', positive)
    .option('--min-confidence <c>', 'gate: mean top-1 score', share)
    .option('--max-confidence-drop <d>', 'gate: drop of the mean top-1 score', share, 0.15)
    .option('--min-frames <n>', 'frames per wave device before the gates are read', int(1), 20)
    .option('--soak-ms <ms>', 'longest wait for those frames', int(1), 60_000)
    .option('--apply-timeout-ms <ms>', 'longest wait for a device to apply', int(1), 120_000)
    .option('--no-auto-rollback', 'leave a failed wave as it is')
    .option('--wait', 'follow the job until it ends; exit 0 only if it succeeded')
    .option('--json', 'print the job as JSON')
    .action(async (o) => {
      const spec: RolloutSpec = {
        model: o.model as string,
        devices: o.devices as string[] | undefined,
        groups: o.groups as string[] | undefined,
        percent: o.percent as number | undefined,
        waves: (o.waves as string[]).map((w) => (w.endsWith('%') ? w : Number(w))),
        gates: {
          maxErrorRate: o.maxErrorRate as number,
          maxLatencyMs: (o.maxLatencyMs as number | undefined) ?? null,
          minConfidence: (o.minConfidence as number | undefined) ?? null,
          maxConfidenceDrop: o.maxConfidenceDrop as number,
        },
        minFrames: o.minFrames as number,
        soakMs: o.soakMs as number,
        applyTimeoutMs: o.applyTimeoutMs as number,
        autoRollback: o.autoRollback as boolean,
      };
      await atEdge(o as EdgeFlags, async (request) => {
        let job = await request<RolloutJob>('rollout', { spec });
        process.stdout.write((o.json ? JSON.stringify(job) : `queued ${jobLine(job)}`) + '\n');
        if (!o.wait) return;
        let last = '';
        while (!TERMINAL.has(job.state)) {
          await new Promise((r) => setTimeout(r, 1000));
          const jobs = await request<RolloutJob[]>('jobs', {});
          job = jobs.find((j) => j.jobId === job.jobId) ?? job;
          const line = jobLine(job);
          if (line !== last && !o.json) process.stdout.write(`${line}\n`);
          last = line;
        }
        if (o.json) process.stdout.write(JSON.stringify(job) + '\n');
        process.exitCode = job.state === 'SUCCEEDED' ? 0 : 1;
      });
    });

  target(fleet.command('rollback'))
    .description('roll a job back: its devices return to the configs they had before')
    .argument('<job>', 'job id (`fleet jobs`)')
    .option('--json', 'print the job as JSON')
    .action(async (jobId: string, o) => {
      await atEdge(o as EdgeFlags, async (request) => {
        const job = await request<RolloutJob>('rollback', { jobId }, 180_000);
        process.stdout.write((o.json ? JSON.stringify(job) : jobLine(job)) + '\n');
        process.exitCode = job.state === 'ROLLED_BACK' ? 0 : 1;
      });
    });

  target(fleet.command('jobs'))
    .description('rollout jobs of an edge and their states')
    .option('--json', 'print the jobs as JSON')
    .action(async (o) => {
      await atEdge(o as EdgeFlags, async (request) => {
        const jobs = await request<RolloutJob[]>('jobs', {});
        if (o.json) process.stdout.write(JSON.stringify(jobs) + '\n');
        else printJobs(jobs);
      });
    });

  target(fleet.command('models'))
    .description('the bundles an edge serves to devices over the air')
    .option('--json', 'print them as JSON')
    .action(async (o) => {
      await atEdge(o as EdgeFlags, async (request) => {
        const models = await request<RegistryListing[]>('models', {});
        if (o.json) process.stdout.write(JSON.stringify(models) + '\n');
        else
          for (const m of models)
            process.stdout.write(
              `${m.ref} ${m.kind}${m.staged ? ' (staged)' : ''} manifest sha256 ${m.manifestSha256} files ${m.files.join(' ')}\n`,
            );
      });
    });
}
