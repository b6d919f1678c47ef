/**
 * `splitfleet edge`: broker + decoder processes + fleet services, in one process.
 *
 * The edge is a composition of parts (bus.ts), each with start() and stop(), each the one
 * owner of its state, talking through a typed event bus:
 *
 *   broker             broker.ts: MQTT on TCP / WebSocket / TLS, the access rules
 *   intake             intake.ts: features -> checker -> decoder pool -> result | error
 *   cluster answers    intake.ts: other nodes' answers (cluster mode only)
 *   fleet configs      fleet/configs.ts: fleet file, rollout pins, configs, acks, jobs
 *   device presence    fleet/presence.ts: devices' status and traffic -> fleet monitor
 *   ota                fleet/registry.ts: bundles served to devices in chunks
 *   edge ops           fleet/ops.ts: rollout, rollback, jobs, models
 *   metrics http       fleet/http.ts: /metrics and /devices
 *   edge status        fleet/presence.ts: the edge's own retained status
 *
 * They start in this order and stop in the reverse one; a start that fails half-way stops
 * what started, the same way. The broker holds incoming connections until every part is
 * up, so a device's first frame finds every subscription in place. On close, the edge's
 * status says offline first; the intake then answers every frame it holds and refuses the
 * ones still coming ('overloaded', edge stopping) until the broker closes.
 */
import type { Bundle } from '../core/model/bundle.js';
import { log } from '../core/util/log.js';
import { MAX_PAYLOAD_BYTES } from '../core/wire/frame.js';
import { bundleRefString } from '../core/wire/ota.js';
import type { ResultMessage } from '../core/wire/messages.js';
import { DEFAULT_BASE } from '../core/wire/topics.js';
import type { Overrides } from '../fleet-config/overrides.js';
import type { FleetFile } from '../fleet-config/schema.js';
import { startBroker, type BrokerOptions, type EdgeBroker } from './broker.js';
import { EdgeBus, part, Parts } from './bus.js';
import type { DecoderPool } from './decode/pool.js';
import { FleetConfigs, type DeviceConfigState, type SetConfigResult } from './fleet/configs.js';
import type { OverrideChange } from '../fleet-config/overrides.js';
import { MetricsHttp } from './fleet/http.js';
import { deviceTable, FleetMonitor, type DeviceView } from './fleet/monitor.js';
import { EdgeOps } from './fleet/ops.js';
import { DevicePresence, EdgeAnnouncer } from './fleet/presence.js';
import { ModelRegistry, namedInConfig, OtaService, type OtaStats } from './fleet/registry.js';
import type { RolloutManager } from './fleet/rollout.js';
import { ClusterAnswers, Intake, type EdgeStats } from './intake.js';

export type { DeviceConfigState, EdgeStats, SetConfigResult };

export interface EdgeOptions extends BrokerOptions {
  edgeId?: string;
  /** Fleet whose devices this edge serves; '+' serves every fleet. */
  fleet?: string;
  /** The fleet the edge's own status, devices report, jobs and ops are under (default:
   * the fleet file's, else the served fleet, else 'default'). */
  statusFleet?: string;
  base?: string;
  bundles: readonly Bundle[];
  /** Bundles decoded and served only where named with their version: new releases
   * waiting for a rollout (`--registry`). */
  staged?: readonly Bundle[];
  /** Decoder processes (pool.ts). */
  workers?: number;
  threadsPerWorker?: number;
  maxQueue?: number;
  /** Frames run through a tail together at most (dynamic batching). */
  maxBatch?: number;
  /** How long an idle decoder process waits for a batch to fill (ms). */
  maxWaitMs?: number;
  /** A checked fleet file (fleet-config/load.ts): each device's effective config is
   * published retained on its config topic. */
  fleetFile?: FleetFile;
  /** Operator overrides on the fleet file at start (fleet-config/overrides.ts). */
  overrides?: Overrides;
  /** Where operator changes (`set-config`) are kept; null or absent: in memory only. */
  overridesFile?: string | null;
  /** HTTP port of `/metrics` (Prometheus) and `/devices` (JSON); 0 picks one; null: none. */
  metricsPort?: number | null;
  /** Where the HTTP listeners bind (`/metrics`, `/devices`); default 127.0.0.1, this host
   * only: they show every device and its traffic to whoever can reach them. */
  httpHost?: string;
  /** Folder of the edge's own state (rollout jobs, `jobs.json`); null: kept in memory. */
  stateDir?: string | null;
  /** Publish every result in full (JSON on `.../result`) also for devices that take
   * compact answers (wire v2); false where nothing listens there. Default: the fleet
   * file's `edge.fullResults` (as it is now), else true; false here wins over the file. */
  fullResults?: boolean;
  /** Largest frame payload taken (bytes; default 1 MiB, MAX_PAYLOAD_BYTES); a larger cap
   * raises the broker's PUBLISH cap with it. */
  maxFrameBytes?: number;
}

export interface Edge {
  broker: EdgeBroker;
  url: string;
  wsUrl: string | null;
  edgeId: string;
  /** The fleet its status, devices report, jobs and ops are under. */
  fleet: string;
  stats(): EdgeStats;
  on(event: 'result', fn: (r: ResultMessage) => void): void;
  /** Publish every device's effective config (retained); devices no longer in the fleet
   * get their retained config cleared. */
  applyFleet(f: FleetFile): Promise<void>;
  configs(): Map<string, DeviceConfigState>;
  /** An operator's change of a device's or group's settings (the `set-config` op). */
  setConfig(change: OverrideChange): Promise<SetConfigResult>;
  /** Every device of the fleet file and every other device seen: presence, traffic, the
   * config wanted and running, the last refusal (also published on
   * `.../edge/<id>/devices` and served on `/devices`). */
  devices(): DeviceView[];
  monitor: FleetMonitor;
  /** The decoder processes and their queue. */
  pool: DecoderPool;
  /** The bundles served to devices over the air (the decoded ones), and their traffic. */
  registry: ModelRegistry;
  ota: OtaStats;
  rollouts: RolloutManager;
  /** `http://host:port` of /metrics and /devices, or null. */
  metricsUrl: string | null;
  close(): Promise<void>;
}

export async function startEdge(opts: EdgeOptions): Promise<Edge> {
  const edgeId = opts.edgeId ?? 'edge-1';
  const base = opts.base ?? DEFAULT_BASE;
  const fleet = opts.fleet ?? '+';
  const statusFleet =
    opts.statusFleet ?? opts.fleetFile?.fleet ?? (fleet === '+' ? 'default' : fleet);
  const workers = Math.max(1, opts.workers ?? 1);
  if (opts.bundles.length === 0) throw new Error('the edge needs at least one model bundle');

  const broker = await startBroker({ ...opts, access: brokerAccess(opts), deferOpen: true });
  const parts = new Parts();
  await parts.start(
    part(
      'broker',
      () => Promise.resolve(),
      () => broker.close(),
    ),
  );
  try {
    const edge = await compose(opts, broker, parts, { edgeId, base, fleet, statusFleet, workers });
    broker.open(); // every subscription of the edge is in place
    log.info(
      { fleet: statusFleet, url: broker.url, wsUrl: broker.wsUrl, models: edge.models, workers },
      'edge up',
    );
    return edge.edge;
  } catch (e) {
    await parts.stop();
    throw e;
  }
}

/** The broker's access options: its PUBLISH cap is raised with a frame cap over the
 * default one (a frame is its payload and 256 B, then the topic and MQTT header). */
function brokerAccess(opts: EdgeOptions): EdgeOptions['access'] {
  const max = opts.maxFrameBytes;
  if (max === undefined || max <= MAX_PAYLOAD_BYTES) return opts.access;
  return {
    ...opts.access,
    maxPayloadBytes: Math.max(opts.access?.maxPayloadBytes ?? 0, max + 256 + 4096),
  };
}

interface Names {
  edgeId: string;
  base: string;
  fleet: string;
  statusFleet: string;
  workers: number;
}

/** Make the parts, start them in order, and the Edge that shows them. */
async function compose(
  opts: EdgeOptions,
  broker: EdgeBroker,
  parts: Parts,
  { edgeId, base, fleet, statusFleet, workers }: Names,
): Promise<{ edge: Edge; models: string[] }> {
  const bus = new EdgeBus();
  const registry = new ModelRegistry(opts.bundles, opts.staged);
  const monitor = new FleetMonitor(edgeId, {
    backlog: (): number => intake.backlog,
    access: () => {
      const a = broker.access.stats;
      return {
        connect: a.refusedConnects,
        publish: a.refusedPublishes,
        subscribe: a.refusedSubscribes,
        oversized: a.oversized,
        violation: a.violations,
      };
    },
  });
  const configs = new FleetConfigs({
    broker,
    bus,
    registry,
    base,
    fleet,
    edgeId,
    statusFleet,
    stateDir: opts.stateDir ?? null,
    metrics: monitor.registry,
    fleetFile: opts.fleetFile,
    overrides: opts.overrides,
    overridesFile: opts.overridesFile ?? null,
  });
  const intake = new Intake({
    broker,
    bus,
    edgeId,
    base,
    fleet,
    bundles: [...opts.bundles, ...(opts.staged ?? [])],
    decoders: {
      workers,
      threads: opts.threadsPerWorker ?? 1,
      maxQueue: opts.maxQueue ?? 256,
      maxBatch: opts.maxBatch,
      maxWaitMs: opts.maxWaitMs,
    },
    // the fleet file in force, asked at each answer (the one given until configs start)
    fullResults: (): boolean =>
      opts.fullResults !== false &&
      ((configs.fleetFile ?? opts.fleetFile)?.edge.fullResults ?? true),
    maxFrameBytes: opts.maxFrameBytes,
  });
  const table = () => {
    const f = configs.fleetFile;
    return deviceTable(
      monitor.snapshot(),
      f?.fleet ?? null,
      Object.keys(f?.devices ?? {}),
      configs.snapshot(),
    );
  };
  const ota = new OtaService(broker, registry, {
    fleet,
    base,
    // a staged bundle goes only to a device whose config (with its rollout pin) names it
    mayFetchStaged: namedInConfig(
      () => configs.fleetFile,
      registry,
      (d) => configs.pinOf(d),
    ),
  });
  const http =
    opts.metricsPort === undefined || opts.metricsPort === null
      ? null
      : new MetricsHttp({
          monitor,
          devices: table,
          edgeId,
          port: opts.metricsPort,
          host: opts.httpHost,
        });
  const models = opts.bundles.map((b) => bundleRefString(b.manifest));

  await parts.start(intake);
  if (opts.redis?.mode === 'cluster')
    await parts.start(new ClusterAnswers({ broker, bus, base, fleet }));
  await parts.start(configs);
  await parts.start(
    new DevicePresence({ broker, bus, monitor, base, fleet, edgeId, statusFleet, table }),
  );
  await parts.start(ota);
  await parts.start(
    new EdgeOps({
      broker,
      base,
      edgeId,
      rollouts: configs.rollouts,
      registry,
      configs,
      fleet: () => configs.fleetFile?.fleet ?? statusFleet,
    }),
  );
  if (http) await parts.start(http);
  await parts.start(new EdgeAnnouncer({ broker, base, edgeId, statusFleet, models, workers }));

  const edge: Edge = {
    broker,
    url: broker.url,
    wsUrl: broker.wsUrl,
    edgeId,
    fleet: statusFleet,
    stats: () => intake.stats(),
    on: (_event, fn) => {
      bus.on('result', (e) => fn(e.result));
    },
    applyFleet: (f) => configs.apply(f),
    configs: () => configs.snapshot(),
    setConfig: (change) => configs.setConfig(change),
    devices: table,
    monitor,
    pool: intake.pool,
    registry,
    ota: ota.stats,
    rollouts: configs.rollouts,
    metricsUrl: http?.url ?? null,
    close: () => parts.stop(),
  };
  return { edge, models };
}
