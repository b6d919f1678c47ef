/**
 * `splitfleet edge`: an edge node (embedded broker, decoder workers, optionally Node-RED)
 * until a signal stops it. It prints where each listener is bound; with `--json`, one JSON
 * line with its URLs instead (EdgeUp), for scripts and benchmarks.
 */
import { Option, type Command } from 'commander';
import { DEFAULT_MODEL } from '../../core/model/zoo.js';
import { MAX_PAYLOAD_BYTES } from '../../core/wire/frame.js';
import { DEFAULT_RATE } from '../../edge-broker/auth.js';
import { int, num, OptionValues } from '../args.js';
import { stopOnSignal } from '../signals.js';
import { DEFAULT_FLEET } from '../../fleet-config/schema.js';

export interface EdgeCliOptions {
  /** The models of --model (none given: the fleet file's, else DEFAULT_MODEL). */
  models: string[];
  host: string;
  httpHost: string;
  port: number;
  /** null: no WebSocket listener. */
  wsPort: number | null;
  workers: number;
  threads: number;
  maxQueue: number;
  maxBatch: number;
  maxWaitMs: number;
  /** --fleet; undefined: the fleet file's, else DEFAULT_FLEET. */
  fleet: string | undefined;
  edgeId: string;
  credentials?: string;
  rate?: number;
  /** null: no metrics listener. */
  metricsPort: number | null;
  tls?: { port: number; key: string; cert: string };
  fleetFile?: string;
  registry?: string;
  stateDir?: string;
  redis?: { url: string; mode: 'cluster' | 'persist' };
  nodeRed?: { port: number; dir?: string };
  /** Full JSON results on `.../result` also for devices that take compact answers. */
  fullResults: boolean;
  /** Largest frame payload taken, bytes. */
  maxFrameBytes: number;
  json: boolean;
}

/** Bounds of --max-frame-bytes: the default (1 MiB) is the agent's largest payload. */
export const MAX_FRAME_BYTES_RANGE = { min: 1024, max: 16 * MAX_PAYLOAD_BYTES } as const;

/** The line `--json` prints once the edge is up; null where a listener is off. */
export interface EdgeUp {
  edge: string;
  /** The fleet it runs (its status, devices report, jobs and ops are under it). */
  fleet: string;
  mqtt: string;
  ws: string | null;
  mqtts: string | null;
  metrics: string | null;
  nodeRed: string | null;
  dashboard: string | null;
}

export function edgeOptions(raw: Readonly<Record<string, unknown>>): EdgeCliOptions {
  const o = new OptionValues(raw, 'splitfleet edge');
  const tlsPort = o.optNum('tlsPort');
  const tlsKey = o.optStr('tlsKey');
  const tlsCert = o.optStr('tlsCert');
  if ((tlsPort !== undefined) !== Boolean(tlsKey && tlsCert)) {
    throw new Error('--tls-port, --tls-key and --tls-cert go together');
  }
  const redis = o.optStr('redis');
  return {
    models: o.optStrs('model') ?? [],
    host: o.str('host'),
    httpHost: o.str('httpHost'),
    port: o.num('port'),
    wsPort: o.flag('ws') ? o.num('wsPort') : null,
    workers: o.num('workers'),
    threads: o.num('threads'),
    maxQueue: o.num('maxQueue'),
    maxBatch: o.num('maxBatch'),
    maxWaitMs: o.num('maxWait'),
    fleet: o.optStr('fleet'),
    edgeId: o.str('edgeId'),
    credentials: o.optStr('credentials'),
    rate: o.optNum('rate'),
    metricsPort: o.flag('metrics') ? o.num('metricsPort') : null,
    tls: tlsPort !== undefined ? { port: tlsPort, key: tlsKey!, cert: tlsCert! } : undefined,
    fleetFile: o.optStr('fleetFile'),
    registry: o.optStr('registry'),
    stateDir: o.optStr('stateDir'),
    redis: redis ? { url: redis, mode: o.choice('redisMode', ['cluster', 'persist']) } : undefined,
    nodeRed: o.flag('nodeRed')
      ? { port: o.num('nodeRedPort'), dir: o.optStr('nodeRedDir') }
      : undefined,
    fullResults: o.flag('fullResults'),
    maxFrameBytes: o.num('maxFrameBytes'),
    json: o.flag('json'),
  };
}

export function register(cmd: Command): void {
  cmd
    .option(
      '--model <names...>',
      `models to serve, besides the ones the fleet file names (default without a fleet file: ${DEFAULT_MODEL})`,
    )
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
    .option(
      '--fleet <id>',
      `fleet to serve ('+' for all; default: the fleet file's, else ${DEFAULT_FLEET})`,
    )
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
      "fleet file: the edge serves the models it names and publishes each device's config retained; edits are re-checked and re-published; operator changes are kept in <file>.overrides.json",
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
    .option(
      '--max-frame-bytes <n>',
      `largest frame payload taken, bytes (${MAX_FRAME_BYTES_RANGE.min}..${MAX_FRAME_BYTES_RANGE.max}); a larger frame is refused as malformed-frame`,
      int(MAX_FRAME_BYTES_RANGE.min, MAX_FRAME_BYTES_RANGE.max),
      MAX_PAYLOAD_BYTES,
    )
    .option(
      '--no-full-results',
      'no full JSON results on .../result for devices that take compact answers (wire v2): where no dashboard or subscriber listens (v1 devices always get them)',
    )
    .option('--json', 'once up, print one JSON line with its URLs instead of the listener table')
    .action(async (_o: unknown, c: Command) => {
      const { runEdge } = await import('./edge-run.js');
      stopOnSignal(await runEdge(edgeOptions(c.opts())));
    });
}
