#!/usr/bin/env node
/**
 * The splitfleet command-line tool.
 */
import { writeSecretFile } from '../core/util/secret-file.js';
import { background } from '../core/util/log.js';
import { loadFleetInWorker } from '../fleet-config/load-worker.js';
import { stopOnSignal } from './signals.js';
import { Command, InvalidArgumentError, Option } from 'commander';
import { watchFile } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Agent } from '../device-agent/agent.js';
import { LEARNED_CODEC_IDS, listCodecs } from '../core/codec/registry.js';
import { imageCodecs } from '../core/codec/image.js';
import {
  bundleFor,
  DEFAULT_MODEL,
  describeSplit,
  listZoo,
  loadBundle,
  resolveModel,
  type Bundle,
} from '../core/model/bundle.js';
import { percentile, round } from '../core/util/stats.js';
import { benchConnections } from '../bench/connections.js';
import { effectiveConfig } from '../fleet-config/effective.js';
import Table from 'cli-table3';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { int, num } from './args.js';
import { applyAgentConfig } from './agent-config.js';
import { addJobCommands, connectEdge, withConnection, type ConnectFlags } from './commands/fleet-jobs.js';
import { edgeTopic } from '../core/wire/topics.js';
import type { DeviceView } from '../edge-broker/fleet/monitor.js';
import {
  FleetConfigError,
  formatProblem,
  loadFleet,
  type FleetContext,
} from '../fleet-config/load.js';
import { fleetSchema } from '../fleet-config/schema.js';
import { ENGINE_NAMES, type EngineName } from '../core/engine/engine.js';
import {
  DEFAULT_RATE,
  hashPassword,
  loadCredentials,
  newPassword,
  parseCredentials,
  ROLES,
  type CredentialFile,
  type Role,
} from '../edge-broker/auth.js';

// The broker, Node-RED, the demo, the rate bench and the plots load when their command
// runs, so `splitfleet agent` on a device never holds them (about 45 MiB of RSS,
// scripts/agent-resources.ts).
type Lazy<F> = F extends (...a: infer A) => infer R ? (...a: A) => Promise<Awaited<R>> : never;
const startEdge: Lazy<typeof import('../edge-broker/edge.js').startEdge> = async (...a) =>
  (await import('../edge-broker/edge.js')).startEdge(...a);
const startNodeRed: Lazy<typeof import('../edge-broker/node-red.js').startNodeRed> = async (...a) =>
  (await import('../edge-broker/node-red.js')).startNodeRed(...a);
const ShareWorker = {
  start: (async (...a) =>
    (await import('../edge-broker/decode/share-worker.js')).ShareWorker.start(...a)) as Lazy<
    typeof import('../edge-broker/decode/share-worker.js').ShareWorker.start
  >,
};
const runDemo: Lazy<typeof import('./demo.js').runDemo> = async (...a) =>
  (await import('./demo.js')).runDemo(...a);
const readRateReport: Lazy<typeof import('../bench/plot.js').readRateReport> = async (...a) =>
  (await import('../bench/plot.js')).readRateReport(...a);
const writePlot: Lazy<typeof import('../bench/plot.js').writePlot> = async (...a) =>
  (await import('../bench/plot.js')).writePlot(...a);

async function model(ref: string): Promise<Bundle> {
  return ref.includes('/') ? loadBundle(ref) : resolveModel(ref);
}

const program = new Command()
  .name('splitfleet')
  .description(
    'Split inference for IoT fleets: CNN head on the device, tail on the edge, features over MQTT.',
  )
  .showHelpAfterError();

program
  .command('demo')
  .description('edge + embedded broker + simulated devices on the shipped sample, offline')
  .option('--frames <n>', 'frames to send in all', int(1), 300)
  .option('--devices <n>', 'simulated devices', int(1, 64), 3)
  .option('--codec <name>', 'feature codec (split-q, aecnn, frankensplit, ...)', 'split-q')
  .option('--point <n>', 'codec operating point', int(0, 255), 0)
  .option('--fps <n>', 'frames per second per device (0: as fast as possible)', num, 20)
  .option('--workers <n>', 'decoder workers', int(1, 64), 2)
  .option('--model <name>', 'model name, name@version or bundle folder', DEFAULT_MODEL)
  .option('--source <path>', "'sample' or an image folder / archive", 'sample')
  .option('--host <addr>', 'listen address', '127.0.0.1')
  .option('--port <n>', 'MQTT TCP port (busy: a free one is used)', int(0, 65535), 1883)
  .option('--ws-port <n>', 'MQTT WebSocket port', int(0, 65535), 9001)
  .option('--json', 'end with one JSON summary line on stdout')
  .action(async (o) => {
    const s = await runDemo({
      ...o,
      bundle: await bundleFor(o.model, o.codec),
      json: Boolean(o.json),
    });
    process.exitCode = s.results + s.errors === s.frames && s.lost === 0 ? 0 : 1;
  });

program
  .command('edge')
  .description('run an edge node: embedded MQTT broker (TCP + WebSocket) and decoder workers')
  .option('--model <names...>', 'models to serve', [DEFAULT_MODEL])
  .option('--host <addr>', 'listen address of MQTT (TCP, WebSocket, TLS)', '0.0.0.0')
  .option(
    '--http-host <addr>',
    'listen address of the HTTP surfaces (metrics, /devices, Node-RED): this host only unless opened, e.g. 0.0.0.0',
    '127.0.0.1',
  )
  .option('--port <n>', 'MQTT TCP port', int(0, 65535), 1883)
  .option('--ws-port <n>', 'MQTT WebSocket port', int(0, 65535), 9001)
  .option('--no-ws', 'no WebSocket listener')
  .option('--workers <n>', 'decoder workers', int(1, 64), 2)
  .option('--threads <n>', 'inference threads per worker', int(1, 64), 1)
  .option('--max-queue <n>', 'frames queued before devices get "overloaded"', int(1), 256)
  .option('--max-batch <n>', 'frames run through the tail together at most', int(1, 1024), 8)
  .option('--max-wait <ms>', 'how long an idle decoder waits for a batch to fill', num, 2)
  .option('--fleet <id>', "fleet to serve ('+' for all)", '+')
  .option('--edge-id <id>', 'edge id', 'edge-1')
  .option(
    '--credentials <file>',
    'credential file (splitfleet fleet credentials add): refuse unknown clients, enforce ACLs',
  )
  .option(
    '--rate <n>',
    `messages per second per client, bursts of twice that (0: no limit); default with --credentials: ${DEFAULT_RATE} for every role but workers, none without`,
    int(0),
  )
  .option(
    '--metrics-port <n>',
    'HTTP port of /metrics (Prometheus) and /devices',
    int(0, 65535),
    9464,
  )
  .option('--no-metrics', 'no metrics listener')
  .option('--tls-port <n>', 'MQTT over TLS port (needs --tls-key and --tls-cert)', int(0, 65535))
  .option('--tls-key <file>', 'PEM private key of the TLS listener')
  .option('--tls-cert <file>', 'PEM certificate (chain) of the TLS listener')
  .option(
    '--fleet-file <file>',
    "fleet file: each device's config is published retained; edits are re-checked and re-published",
  )
  .option(
    '--registry <dir>',
    'staged bundles: decoded, and sent to devices over the air, where a rollout or a name@version asks for them',
  )
  .option('--state-dir <dir>', 'where the edge keeps rollout jobs (jobs.json) across restarts')
  .option(
    '--redis <url>',
    'broker state in Redis (redis://host:port[/db]): nodes on the same Redis form one cluster (give each its own --edge-id)',
  )
  .addOption(
    new Option(
      '--redis-mode <mode>',
      'cluster: state and message bus in Redis; persist: state only (one node that survives restarts)',
    )
      .choices(['cluster', 'persist'])
      .default('cluster'),
  )
  .option(
    '--node-red',
    'also start Node-RED: editor on --node-red-port, dashboard on /dashboard, splitfleet nodes and example flows',
  )
  .option('--node-red-port <n>', 'Node-RED HTTP port', int(0, 65535), 1880)
  .option(
    '--node-red-dir <dir>',
    "Node-RED's user folder (flows, credentials); default <state-dir>/node-red or .splitfleet/node-red",
  )
  .action(async (o) => {
    const bundles = await Promise.all((o.model as string[]).map(model));
    const staged: Bundle[] = [];
    if (o.registry) {
      const dir = o.registry as string;
      for (const m of await listZoo(dir)) {
        if (!bundles.some((b) => b.manifest.name === m.name && b.manifest.version === m.version))
          staged.push(await loadBundle(join(dir, `${m.name}-v${m.version}`)));
      }
    }
    if (o.stateDir) await mkdir(o.stateDir as string, { recursive: true });
    const credentials = o.credentials ? await loadCredentials(o.credentials as string) : undefined;
    if ((o.tlsPort !== undefined) !== Boolean(o.tlsKey && o.tlsCert)) {
      throw new InvalidArgumentError('--tls-port, --tls-key and --tls-cert go together');
    }
    const tls =
      o.tlsPort !== undefined
        ? {
            port: o.tlsPort as number,
            key: await readFile(o.tlsKey as string),
            cert: await readFile(o.tlsCert as string),
          }
        : undefined;
    const edge = await startEdge({
      bundles,
      staged,
      tls,
      metricsPort: o.metrics ? (o.metricsPort as number) : null,
      httpHost: o.httpHost as string,
      access: { credentials, ratePerSecond: o.rate as number | undefined },
      host: o.host,
      port: o.port,
      wsPort: o.ws ? o.wsPort : null,
      workers: o.workers,
      threadsPerWorker: o.threads,
      maxQueue: o.maxQueue,
      maxBatch: o.maxBatch,
      maxWaitMs: o.maxWait,
      fleet: o.fleet,
      edgeId: o.edgeId,
      stateDir: (o.stateDir as string | undefined) ?? null,
      redis: o.redis
        ? { url: o.redis as string, mode: o.redisMode as 'cluster' | 'persist' }
        : undefined,
    });
    const nodeRed = o.nodeRed
      ? await startNodeRed({
          port: o.nodeRedPort as number,
          host: o.httpHost as string,
          credentials,
          userDir:
            (o.nodeRedDir as string | undefined) ??
            join((o.stateDir as string | undefined) ?? '.splitfleet', 'node-red'),
          edgeUrl: `mqtt://127.0.0.1:${new URL(edge.url).port}`,
          username: process.env.SPLITFLEET_NODE_RED_USER,
          password: process.env.SPLITFLEET_NODE_RED_PASSWORD,
        })
      : null;
    if (nodeRed) {
      process.stdout.write(
        `Node-RED editor on ${nodeRed.url}/, dashboard on ${nodeRed.dashboardUrl}\n`,
      );
      if (nodeRed.generatedLogin) {
        const { username, password } = nodeRed.generatedLogin;
        process.stdout.write(
          `Node-RED login (shown only now; only its hash is kept, in .splitfleet-admin.json of the Node-RED folder: delete it for a new password): user ${username}, password ${password}\n`,
        );
      }
    }
    process.stdout.write(
      `edge ${edge.edgeId} on ${edge.url}${edge.wsUrl ? ` and ${edge.wsUrl}` : ''}${edge.broker.tlsUrl ? ` and ${edge.broker.tlsUrl}` : ''}${edge.metricsUrl ? `; metrics on ${edge.metricsUrl}/metrics` : ''}\n`,
    );
    // where each listener is really bound, and who can reach it
    const reach = (host: string) =>
      host === '0.0.0.0' || host === '::'
        ? 'every interface'
        : /^(127\.|::1$|localhost$)/.test(host)
          ? 'this host only'
          : 'that interface';
    const port = (url: string | null) => (url ? new URL(url).port : null);
    const rows: [string, string, string | null][] = [
      ['mqtt', o.host as string, port(edge.url)],
      ['mqtt-ws', o.host as string, port(edge.wsUrl)],
      ['mqtts', o.host as string, port(edge.broker.tlsUrl)],
      ['metrics', o.httpHost as string, port(edge.metricsUrl)],
      ['node-red', o.httpHost as string, port(nodeRed?.url ?? null)],
    ];
    process.stdout.write(
      `listening (${credentials ? 'logins required' : 'NO LOGIN: open broker, use --credentials'}):\n${rows
        .filter((r) => r[2] !== null)
        .map(([name, host, p]) => `  ${name.padEnd(9)} ${host}:${p} (${reach(host)})\n`)
        .join('')}`,
    );
    if (o.credentials) {
      // rotation: an edited credential file replaces the users at once; a client whose
      // login changed or went is disconnected (a broken edit keeps the users in force)
      const file = o.credentials as string;
      watchFile(file, { interval: 1000 }, () =>
        background(
          loadCredentials(file).then(
            (next) => {
              const { disconnected } = edge.broker.access.setCredentials(next);
              nodeRed?.setCredentials(next);
              process.stdout.write(
                `credential file ${file} reloaded: ${Object.keys(next.users).length} users, ${disconnected} clients disconnected\n`,
              );
            },
            (e: unknown) =>
              process.stderr.write(
                `credential file ${file} not reloaded, the users in force stay:\n${e instanceof Error ? e.message : String(e)}\n`,
              ),
          ),
          'credential file reload',
        ),
      );
    }
    if (o.fleetFile) {
      const file = o.fleetFile as string;
      // each edit is re-checked on a worker thread (a large fleet file never stalls the
      // broker), one reload at a time, in the order of the edits
      let reloads: Promise<void> = Promise.resolve();
      const load = () => (reloads = reloads.then(reload));
      const reload = async () => {
        try {
          await edge.applyFleet(await loadFleetInWorker(file, await fleetContext()));
          process.stdout.write(`fleet file ${file} published\n`);
        } catch (e) {
          // a broken edit never replaces the configs in force
          process.stderr.write(
            `fleet file ${file} not applied, the previous configs stay:\n${e instanceof Error ? e.message : String(e)}\n`,
          );
        }
      };
      await load();
      watchFile(file, { interval: 1000 }, () => background(load(), 'fleet file reload'));
    }
    const stop = async () => {
      process.stdout.write(`stopping: ${JSON.stringify(edge.stats())}\n`);
      await nodeRed?.close();
      await edge.close();
    };
    stopOnSignal(stop);
  });

program
  .command('worker')
  .description(
    'a decoder worker on any MQTT 5 broker: shares the feature stream with its group ($share/...)',
  )
  .option('--url <url>', 'broker URL', 'mqtt://127.0.0.1:1883')
  .option('--group <name>', 'shared-subscription group', 'splitfleet-decoders')
  .option('--id <id>', 'worker id (client id sf-worker-<id>)', `w${process.pid}`)
  .option('--fleet <id>', "fleet to decode ('+': all)", '+')
  .option('--model <names...>', 'models to decode', [DEFAULT_MODEL])
  .option('--threads <n>', 'inference threads', int(1, 64), 1)
  .option('--username <u>', 'MQTT username (a worker)')
  .option('--password <p>', 'MQTT password (or SPLITFLEET_PASSWORD)')
  .option('--ca <file>', 'PEM certificate(s) to trust for mqtts://')
  .action(async (o) => {
    const w = await ShareWorker.start({
      url: o.url as string,
      group: o.group as string,
      workerId: o.id as string,
      fleet: o.fleet as string,
      bundles: await Promise.all((o.model as string[]).map(model)),
      threads: o.threads as number,
      username: o.username as string | undefined,
      password: (o.password as string | undefined) ?? process.env.SPLITFLEET_PASSWORD,
      ca: o.ca ? await readFile(o.ca as string) : undefined,
    });
    process.stdout.write(`worker ${o.id} in group ${o.group} on ${o.url}\n`);
    const stop = async () => {
      await w.stop();
      process.stdout.write(`stopped: ${JSON.stringify(w.stats)}\n`);
    };
    stopOnSignal(stop);
  });

program
  .command('agent')
  .description('run a device agent: source -> head -> codec -> MQTT, and listen for results')
  .option(
    '--config <file>',
    'agent config file (YAML/JSON): one key per flag, e.g. "latency-goal: 80"; flags win',
  )
  .option('--device <id>', 'device id (required, here or in --config)')
  .option(
    '--url <url>',
    'edge broker URL; several, comma-separated (a cluster): the next is tried when one is lost',
    'mqtt://127.0.0.1:1883',
  )
  .option('--fleet <id>', 'fleet id', 'default')
  .option('--model <name>', 'model name, name@version or bundle folder', DEFAULT_MODEL)
  .option('--codec <name>', 'feature codec (split-q, aecnn, frankensplit, ...)', 'split-q')
  .option('--point <n>', 'codec operating point', int(0, 255), 0)
  .option(
    '--source <path>',
    "'sample', an image folder, a .tar.gz, the CIFAR-10 binary release, v4l2:/dev/video0, a video file or stream URL, mqtt://host/topic, or - (stdin)",
    'sample',
  )
  .option('--split <split>', 'dataset split to read', 'test')
  .option('--frames <n>', 'stop after n frames', int(1))
  .option('--loop', 'repeat the source forever')
  .option('--fps <n>', 'frames per second (0: as fast as the window allows)', num, 5)
  .option('--threads <n>', 'head inference threads', int(1, 64), 1)
  .addOption(
    new Option(
      '--engine <name>',
      'head inference engine (one it cannot run falls back, logged; a fleet config may change it)',
    )
      .choices(ENGINE_NAMES)
      .default('auto'),
  )
  .option('--username <u>', 'MQTT username')
  .option('--password <p>', 'MQTT password (or SPLITFLEET_PASSWORD)')
  .option('--ca <file>', 'PEM certificate(s) to trust for an mqtts:// edge')
  .option(
    '--outbox <dir>',
    'persistent outbox: frames survive a lost link and a restart (drop-oldest when full)',
  )
  .option('--outbox-frames <n>', 'outbox capacity in frames', int(1), 1000)
  .option('--tag-frames', "send each image's name in its frame (dashboards can show the image)")
  .option('--window <n>', 'frames awaiting results before capture waits', int(1, 1_000_000), 4)
  .option(
    '--latency-goal <ms>',
    'pick the most accurate point of a learned codec that meets this end-to-end latency on the link',
    num,
  )
  .option('--max-kbps <n>', 'never send features faster than this (kbit/s)', num)
  .option(
    '--bundle-dir <dir>',
    'bundle store: models a config names are fetched from the edge over the air into it',
  )
  .option('--json', 'end with one JSON summary line')
  .action(async (opts, cmd: Command) => {
    if (opts.config) await applyAgentConfig(cmd, opts.config as string);
    const o = cmd.opts();
    if (!o.device) throw new Error('--device (or "device:" in --config) is required');
    const agent = new Agent(
      {
        url: o.url,
        fleet: o.fleet,
        deviceId: o.device,
        bundle: await bundleFor(o.model, o.codec),
        codec: o.codec,
        point: o.point,
        source: { source: o.source, split: o.split, loop: Boolean(o.loop), limit: o.frames },
        fps: o.fps,
        threads: o.threads,
        engine: o.engine as EngineName,
        username: o.username,
        password: o.password ?? process.env.SPLITFLEET_PASSWORD,
        // a config from the edge may name another model or a learned codec
        resolveBundle: (m, codec) => bundleFor(m, codec),
        ca: o.ca ? await readFile(o.ca as string) : undefined,
        outbox: o.outbox
          ? { dir: o.outbox as string, maxFrames: o.outboxFrames as number }
          : undefined,
        bundles: o.bundleDir ? { dir: o.bundleDir as string } : undefined,
        latencyGoalMs: (o.latencyGoal as number | undefined) ?? null,
        tagFrames: Boolean(o.tagFrames),
        maxKbps: (o.maxKbps as number | undefined) ?? null,
        maxInFlight: o.window as number,
      },
      {
        result: (r, ms) =>
          !o.json &&
          process.stdout.write(`frame ${r.frameId}: ${r.label} (${r.score}) in ${ms} ms\n`),
      },
    );
    await agent.start();
    const stop = async () => {
      await agent.stop(true);
    };
    stopOnSignal(stop);
    const s = await agent.run();
    await agent.stop();
    const summary = {
      sent: s.sent,
      results: s.results,
      errors: s.errors,
      lost: s.lost,
      accuracy: s.labelled ? round(s.correct / s.labelled, 4) : null,
      bytesPerFrame: s.sent ? round(s.frameBytes / s.sent, 1) : 0,
      latencyMs: {
        p50: round(percentile(s.latenciesMs, 50)),
        p99: round(percentile(s.latenciesMs, 99)),
      },
      headMsP50: round(percentile(s.headMs, 50), 3),
      fps: s.elapsedMs > 0 ? round((1000 * s.sent) / s.elapsedMs, 2) : 0,
      skipped: s.skipped,
      reconnects: s.reconnects,
      dropped: s.dropped,
      restored: s.restored,
      ota: agent.updater?.stats ?? null,
      point: agent.opts.point,
      pointChanges: s.pointChanges.length,
    };
    process.stdout.write(
      (o.json ? JSON.stringify(summary) : `summary: ${JSON.stringify(summary)}`) + '\n',
    );
  });

const bench = program
  .command('bench')
  .description('benchmarks (print a table; --json adds one JSON line)');
bench
  .command('engines')
  .description(
    'the device encoder (head + codec encode) on each inference engine and thread count: ms per frame, memory, maxAbsDiff vs onnx',
  )
  .option('--model <name>', 'model name, name@version or bundle folder', DEFAULT_MODEL)
  .option('--codec <name>', 'feature codec (split-q, splitfleet, aecnn, ...)', 'split-q')
  .option('--point <n>', 'codec operating point', int(0, 255), 0)
  .option('--frames <n>', 'timed frames per engine and thread count', int(1, 100_000), 200)
  .option('--warmup <n>', 'untimed frames first', int(0, 10_000), 20)
  .option('--threads <n...>', 'thread counts', ['1', '2'])
  .option('--compare <n>', 'images whose head outputs are compared with onnx', int(1, 500), 50)
  .option('--json', 'print one JSON object on the last line')
  .action(async (o) => {
    const { benchEngines, enginesTable } = await import('../bench/engines.js');
    const r = await benchEngines({
      model: o.model as string,
      codec: o.codec as string,
      point: o.point as number,
      frames: o.frames as number,
      warmup: o.warmup as number,
      threads: (o.threads as string[]).map((t) => int(1, 64)(t)),
      compare: o.compare as number,
      log: (l) => process.stderr.write(`${l}\n`),
    });
    process.stdout.write(enginesTable(r));
    if (o.json) process.stdout.write(JSON.stringify(r) + '\n');
  });
bench
  .command('throughput')
  .description(
    'edge results/s and latency through the broker vs the raw decoder pool, and broker fan-in vs mosquitto',
  )
  .option('--devices <n>', 'simulated devices', int(1, 19_000), 100)
  .option('--seconds <n>', 'seconds per measured step', int(1, 3600), 10)
  .option('--model <name>', 'model name, name@version or bundle folder', 'splitfleet-cifar10')
  .option('--codec <name>', 'feature codec', 'splitfleet')
  .option('--point <n>', 'codec operating point', int(0, 255), 0)
  .option('--workers <n>', 'decoder threads', int(1, 64), 2)
  .option('--max-batch <n>', 'frames per tail batch at most', int(1, 1024), 8)
  .option('--max-wait <ms>', 'how long an idle decoder waits for a batch to fill', num, 2)
  .option('--p99-bound <ms>', 'a step counts when its p99 latency stays under this', num, 50)
  .option('--loads <shares...>', 'offered load per step, as shares of the raw rate', [
    '0.5',
    '0.7',
    '0.8',
    '0.9',
  ])
  .option('--json', 'print one JSON object on the last line')
  .action(async (o) => {
    const { benchThroughput, throughputTable } = await import('../bench/throughput.js');
    const r = await benchThroughput({
      devices: o.devices as number,
      seconds: o.seconds as number,
      model: o.model as string,
      codec: o.codec as string,
      point: o.point as number,
      workers: o.workers as number,
      maxBatch: o.maxBatch as number,
      maxWaitMs: o.maxWait as number,
      p99BoundMs: o.p99Bound as number,
      loads: (o.loads as string[]).map((x) => num(x)),
      log: (l) => process.stderr.write(`${l}\n`),
    });
    process.stdout.write(throughputTable(r));
    if (o.json) process.stdout.write(JSON.stringify(r) + '\n');
  });
bench
  .command('connections')
  .description(
    'many simulated devices on one edge process, with presence: edge memory and devices online',
  )
  .option('--count <n>', 'simulated device connections', int(1, 19_000), 10_000)
  .option('--json', 'print one JSON object on the last line')
  .action(async (o) => {
    const r = await benchConnections({
      count: o.count as number,
      log: (l) => process.stderr.write(`${l}\n`),
    });
    process.stdout.write(
      `${r.connected}/${r.connections} connected in ${r.connectSeconds} s; ${r.devicesOnline} devices online, ` +
        `${r.devicesOnlineAfterCut} after cutting them all (wills); edge RSS ${r.edgeRssMiB.idle} MiB idle, ` +
        `${r.edgeRssMiB.connected} MiB connected (${r.perConnectionKiB} KiB per connection; goal < 1 GiB: ${r.goalRssUnder1GiB ? 'met' : 'NOT met'})\n`,
    );
    if (o.json) process.stdout.write(JSON.stringify(r) + '\n');
    process.exitCode = r.devicesOnline === r.connections && r.devicesOnlineAfterCut === 0 ? 0 : 1;
  });
bench
  .command('rate')
  .description('bytes per sample vs top-1 for every codec and input-offload baseline')
  .addOption(
    new Option('--data <path>', 'CIFAR-10 archive or folder')
      .env('SPLITFLEET_CIFAR10')
      .makeOptionMandatory(),
  )
  .option('--limit <n>', 'only the first n test samples (a quick run, not a result)', int(1))
  .option('--model <name>', 'model', DEFAULT_MODEL)
  .option('--threads <n>', 'inference threads', int(1, 64), 2)
  .option('--batch <n>', 'samples per inference batch', int(1, 4096), 200)
  .option(
    '--codecs <names...>',
    "learned-codec bundles to include (zoo names or folders; 'all' or 'none')",
    ['all'],
  )
  .option('--methods <names...>', 'only these methods (unsplit always runs), e.g. jpeg-scan aecnn')
  .option('--timing <n>', 'samples timed one by one with one thread (0: none)', int(0), 100)
  .option('--json', 'print one JSON object on the last line')
  .option('--markdown', 'print the table as Markdown')
  .option('--plot <file>', 'write the rate-accuracy curves (.svg or .png)')
  .action(async (o) => {
    const names = o.codecs as string[];
    const codecBundles = names.includes('none')
      ? []
      : names.includes('all')
        ? await Promise.all(
            (await listZoo())
              .filter((m) => m.kind === 'codec')
              .map((m) => resolveModel(`${m.name}@${m.version}`)),
          )
        : await Promise.all(names.map(model));
    const { benchRate, rateMarkdown, rateTable } = await import('../bench/rate.js');
    const r = await benchRate({
      data: o.data,
      bundle: await model(o.model),
      codecBundles,
      timingSamples: o.timing,
      methods: o.methods as string[] | undefined,
      limit: o.limit,
      threads: o.threads,
      batch: o.batch,
      progress: process.stderr.isTTY,
    });
    process.stdout.write((o.markdown ? rateMarkdown(r) : rateTable(r)) + '\n');
    if (o.plot) {
      await writePlot(r, o.plot);
      process.stderr.write(`plot written to ${o.plot}\n`);
    }
    if (o.json) {
      const { dataset, samples, unsplitAccuracy, rows } = r;
      process.stdout.write(
        JSON.stringify({
          dataset,
          samples,
          timingSamples: r.timingSamples,
          limited: r.limited,
          model: r.model,
          splitPoint: r.splitPoint,
          splitShape: r.splitShape,
          unsplitAccuracy,
          rows,
        }) + '\n',
      );
    }
  });

bench
  .command('latency')
  .description(
    'one device over shaped links (namespaces; netem or scripts/linkemu.py): local vs input offload vs split, latency, wire bytes, max frame rate',
  )
  .option(
    '--profiles <specs...>',
    'links as name:kbps:delayMs[:loss] (default: 10mbit-20ms, 1mbit-50ms, 250kbit-100ms-1%)',
  )
  .option(
    '--methods <names...>',
    'only these methods, by name or codec (e.g. local webp splitfleet)',
  )
  .option('--fps <n>', 'frame rate of the latency runs', num, 10)
  .option('--seconds <n>', 'seconds per run and per probe', num)
  .option('--probes <n>', 'probes of the max-rate search per method and link', int(0, 20))
  .option('--max-fps <n>', 'ceiling of the max-rate search', num, 150)
  .option('--source <path>', 'images (default: the shipped sample)')
  .addOption(
    new Option('--shaper <kind>', 'link shaper')
      .choices(['auto', 'netem', 'linkemu'])
      .default('auto'),
  )
  .option('--quick', 'short runs, one probe (a smoke run, not a result)')
  .option('--json', 'print one JSON object on the last line')
  .option('--plot <file>', 'write latency and max rate against link rate (.svg)')
  .action(async (o) => {
    const { benchLatency, DEFAULT_METHODS, latencyTable, parseProfile, writeLatencyPlot } =
      await import('../bench/latency/run.js');
    const names = o.methods as string[] | undefined;
    const methods = names
      ? DEFAULT_METHODS.filter(
          (m) => names.includes(m.name) || names.includes(m.codec) || names.includes(m.kind),
        )
      : undefined;
    if (names && !methods?.length) throw new Error(`--methods: none of ${names.join(', ')}`);
    const r = await benchLatency({
      profiles: (o.profiles as string[] | undefined)?.map(parseProfile),
      methods,
      fps: o.fps as number,
      seconds: o.seconds as number | undefined,
      probes: o.probes as number | undefined,
      maxFps: o.maxFps as number,
      source: o.source as string | undefined,
      shaper: o.shaper as 'auto' | 'netem' | 'linkemu',
      quick: Boolean(o.quick),
      log: (l) => process.stderr.write(`${l}\n`),
    });
    process.stdout.write(latencyTable(r) + '\n');
    if (o.plot) {
      await writeLatencyPlot(r, o.plot as string);
      process.stderr.write(`plot written to ${o.plot}\n`);
    }
    if (o.json) process.stdout.write(JSON.stringify(r) + '\n');
  });
bench
  .command('offload-worker', { hidden: true })
  .description('the edge half of input offload for bench latency (edge-broker/image-offload.ts)')
  .requiredOption('--url <url>', 'the edge broker')
  .requiredOption('--fleet <id>', 'the fleet whose devices send images')
  .option('--model <names...>', 'backbones to serve', [DEFAULT_MODEL])
  .action(async (o) => {
    const { ImageOffloadWorker } = await import('../edge-broker/image-offload.js');
    const w = await ImageOffloadWorker.start({
      url: o.url as string,
      fleet: o.fleet as string,
      bundles: await Promise.all((o.model as string[]).map(model)),
    });
    process.stdout.write(`offload worker up for fleet ${o.fleet} on ${o.url}\n`);
    const stop = async () => {
      await w.stop();
      process.stdout.write(`stopped: ${JSON.stringify(w.stats)}\n`);
    };
    stopOnSignal(stop);
  });

bench
  .command('plot')
  .description('redraw the rate-accuracy curves of a saved `bench rate --json` output')
  .argument('<report>', "a file whose last line is bench rate's JSON")
  .requiredOption('--plot <file>', 'the picture to write (.svg or .png)')
  .action(async (report: string, o: { plot: string }) => {
    await writePlot(await readRateReport(report), o.plot);
    process.stderr.write(`plot written to ${o.plot}\n`);
  });

const fleet = program
  .command('fleet')
  .description('the fleet file: validate it, show effective device configs, write its schema');
fleet
  .command('validate')
  .description('check a fleet file; exit 0 when valid, else 1 with every problem as file:line:col')
  .argument('<file>', 'fleet file (YAML)')
  .option('--json', 'print the result as one JSON object')
  .action(async (file: string, o: { json?: boolean }) => {
    try {
      const f = await loadFleet(file, await fleetContext());
      const devices = Object.keys(f.devices).length;
      process.stdout.write(
        o.json
          ? JSON.stringify({ valid: true, file, fleet: f.fleet, devices, problems: [] }) + '\n'
          : `${file}: valid (fleet ${f.fleet}, ${devices} devices)\n`,
      );
    } catch (e) {
      if (!(e instanceof FleetConfigError)) throw e;
      process.stdout.write(
        o.json
          ? JSON.stringify({ valid: false, file, problems: e.problems }) + '\n'
          : e.problems.map(formatProblem).join('\n') + '\n',
      );
      process.exitCode = 1;
    }
  });
fleet
  .command('show')
  .description("each device's effective config (defaults <- group <- device) as JSON lines")
  .argument('<file>', 'fleet file (YAML)')
  .option('--device <id>', 'only this device')
  .action(async (file: string, o: { device?: string }) => {
    const f = await loadFleet(file, await fleetContext());
    const ids = o.device ? [o.device] : Object.keys(f.devices);
    for (const id of ids) process.stdout.write(JSON.stringify(effectiveConfig(f, id)) + '\n');
  });
withConnection(
  fleet
    .command('status')
    .description('every device the edges see: presence, model, codec, point, traffic, errors'),
)
  .option('--fleet <id>', "only this fleet's edges ('+': all)", '+')
  .option('--wait <ms>', "how long to collect the edges' retained reports", int(100, 60_000), 1500)
  .option('--json', 'one JSON object: {edges, devices}')
  .action(async (o) => {
    const client = await connectEdge(o as ConnectFlags);
    const reports = new Map<string, { edgeId: string; ts: number; devices: DeviceView[] }>();
    client.on('message', (topic, payload) => {
      try {
        const r = JSON.parse(payload.toString('utf8')) as {
          edgeId: string;
          ts: number;
          devices: DeviceView[];
        };
        if (Array.isArray(r.devices)) reports.set(topic, r);
      } catch {
        // not a devices report
      }
    });
    await client.subscribeAsync(edgeTopic(o.fleet as string, '+', 'devices'), { qos: 1 });
    await new Promise((r) => setTimeout(r, o.wait as number));
    await client.endAsync();
    const devices = [...reports.values()].flatMap((r) =>
      r.devices.map((d) => ({ ...d, edgeId: r.edgeId })),
    );
    if (o.json) {
      process.stdout.write(
        JSON.stringify({ edges: [...reports.values()].map((r) => r.edgeId), devices }) + '\n',
      );
      return;
    }
    const table = new Table({
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
      table.push([
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
    process.stdout.write(
      `${reports.size} edge(s), ${devices.length} device(s)\n${table.toString()}\n`,
    );
  });
fleet
  .command('credentials')
  .description(
    'add or replace a user in a credential file (salted scrypt hash); prints a new password once',
  )
  .argument('<file>', 'credential file (JSON; created if missing)')
  .requiredOption('--user <id>', 'user name (for a device: its device id)')
  .addOption(new Option('--role <role>', 'role').choices([...ROLES]).makeOptionMandatory())
  .option('--fleet <id>', 'fleet the user belongs to (required for devices)')
  .action(async (file: string, o: { user: string; role: Role; fleet?: string }) => {
    let store: CredentialFile = { version: 1, users: {} };
    try {
      store = parseCredentials(await readFile(file, 'utf8'), file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const password = process.env.SPLITFLEET_PASSWORD || newPassword();
    store.users[o.user] = {
      role: o.role,
      fleet: o.fleet ?? null,
      hash: await hashPassword(password),
    };
    const checked = parseCredentials(JSON.stringify(store), file); // ids, fleet of devices
    await writeSecretFile(file, JSON.stringify(checked, null, 2) + '\n');
    process.stdout.write(
      process.env.SPLITFLEET_PASSWORD
        ? `${o.user}: stored (${o.role})\n`
        : `${o.user}: stored (${o.role}); password (shown once): ${password}\n`,
    );
  });
fleet
  .command('schema')
  .description("print the fleet file's JSON Schema (fleet-config/fleet.schema.json)")
  .action(() => {
    process.stdout.write(JSON.stringify(fleetSchema(), null, 2) + '\n');
  });

/** The codecs and models a fleet file may name: the registry, image codecs and the zoo. */
async function fleetContext(): Promise<FleetContext> {
  const zoo = await listZoo();
  return {
    codecs: [
      ...listCodecs().map((c) => c.name),
      ...imageCodecs.map((c) => c.name),
      ...Object.keys(LEARNED_CODEC_IDS),
    ],
    models: zoo
      .filter((m) => m.kind === 'backbone')
      .flatMap((m) => [m.name, `${m.name}@${m.version}`]),
  };
}

program
  .command('models')
  .description('list the model zoo and the codecs')
  .action(async () => {
    for (const m of await listZoo()) {
      process.stdout.write(
        `model ${m.name}@${m.version} (id ${m.modelId}): ${m.arch}, split after ${describeSplit(m)}, top-1 ${(m.accuracy.top1 * 100).toFixed(2)}% on ${m.accuracy.samples} ${m.accuracy.split} samples\n`,
      );
      if (m.kind === 'codec') {
        for (const p of m.codec.points) {
          process.stdout.write(
            `  codec ${m.codec.id} ${m.codec.method} point ${p.index}=${p.label}: top-1 ${(p.top1 * 100).toFixed(2)}%, ` +
              `${(p.bitsPerImage / 8).toFixed(1)} B/image (ideal), device ${p.deviceMacs} MACs\n`,
          );
        }
      }
    }
    for (const c of listCodecs()) {
      process.stdout.write(
        `codec ${c.id} ${c.name} v${c.version}: ${c.points.map((p) => `${p.index}=${p.label}`).join(' ')}\n`,
      );
    }
    for (const c of imageCodecs) {
      process.stdout.write(
        `input codec ${c.id} ${c.name} v${c.version}: ${c.points.map((p) => `${p.index}=${p.label}`).join(' ')}\n`,
      );
    }
  });

addJobCommands(fleet);

program.parseAsync().catch((e: unknown) => {
  process.stderr.write(`splitfleet: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
