/**
 * `splitfleet edge`: broker + decoder workers + result publisher, in one process.
 *
 * Features arrive on <base>/<fleet>/device/<id>/features. Each frame is checked on
 * receipt (a bad one gets an error at once), queued for a decoder, and its result is
 * published on .../result, or an error on .../error. QoS 1 redeliveries and re-sends of
 * a frame id already seen from that device are collapsed: the frame is decoded once and
 * a redelivery of an answered frame gets the same answer again (answers.ts).
 */
import type { AedesPublishPacket } from 'aedes';
import type { Bundle } from '../core/model/bundle.js';
import {
  CONFIG_VERSION,
  errorMessage,
  parseError,
  parseResult,
  type ConfigAck,
  type ConfigMessage,
  type DeviceStatus,
  type EdgeStatus,
  type ErrorCode,
  type OpResponse,
  type ResultMessage,
} from '../core/wire/messages.js';
import {
  DEFAULT_BASE,
  deviceFilter,
  deviceOpTopic,
  deviceTopic,
  edgeOpTopic,
  edgeStatusTopic,
  edgeTopic,
  parseOpTopic,
  parseTopic,
  type OpTopic,
} from '../core/wire/topics.js';
import { background, limitedLog, log } from '../core/util/log.js';
import { configIdWithBundle, effectiveConfig } from '../fleet-config/effective.js';
import { join } from 'node:path';
import { ModelRegistry, namedInConfig, serveRegistry, type OtaStats } from './fleet/registry.js';
import { bundleRefString } from '../core/wire/ota.js';
import { RolloutError, RolloutManager, type RolloutSpec } from './fleet/rollout.js';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import { FleetMonitor, type DeviceView } from './fleet/monitor.js';
import type { FleetFile } from '../fleet-config/schema.js';
import {
  handBack,
  listen,
  shownHost,
  startBroker,
  type BrokerOptions,
  type EdgeBroker,
} from './broker.js';
import { DecodeFailure, FrameChecker } from './decode/decoder.js';
import { DecoderPool } from './decode/pool.js';
import { AnswerCache } from './answers.js';
import { fromThisNode } from './cluster.js';

export interface EdgeOptions extends BrokerOptions {
  edgeId?: string;
  /** Fleet whose devices this edge serves; '+' serves every fleet. */
  fleet?: string;
  /** The fleet the edge's own status is published under. */
  statusFleet?: string;
  base?: string;
  bundles: readonly Bundle[];
  /** Bundles decoded and served only where named with their version: new releases
   * waiting for a rollout (`--registry`). */
  staged?: readonly Bundle[];
  /** Decoder threads (pool.ts). */
  workers?: number;
  threadsPerWorker?: number;
  maxQueue?: number;
  /** Frames run through a tail together at most (dynamic batching). */
  maxBatch?: number;
  /** How long an idle decoder thread waits for a batch to fill (ms). */
  maxWaitMs?: number;
  /** A checked fleet file (fleet-config/load.ts): each device's effective config is
   * published retained on its config topic. */
  fleetFile?: FleetFile;
  /** HTTP port of `/metrics` (Prometheus) and `/devices` (JSON); 0 picks one; null: none. */
  metricsPort?: number | null;
  /** Where the HTTP listeners bind (`/metrics`, `/devices`); default 127.0.0.1, this host
   * only: they show every device and its traffic to whoever can reach them. */
  httpHost?: string;
  /** Folder of the edge's own state (rollout jobs, `jobs.json`); null: kept in memory. */
  stateDir?: string | null;
}

/** What the edge wants a device to run and what the device says it runs. */
export interface DeviceConfigState {
  wanted: string;
  applied: string | null;
  /** The reason of the device's last refusal, if its last answer was one. */
  refused: string | null;
  /** The config id it refused last (null: its last answer was no refusal). */
  refusedId: string | null;
}

export interface EdgeStats {
  received: number;
  results: number;
  errors: number;
  duplicates: number;
  backlog: number;
}

export interface Edge {
  broker: EdgeBroker;
  url: string;
  wsUrl: string | null;
  edgeId: string;
  stats(): EdgeStats;
  on(event: 'result', fn: (r: ResultMessage) => void): void;
  /** Publish every device's effective config (retained); devices no longer in the fleet
   * get their retained config cleared. */
  applyFleet(f: FleetFile): Promise<void>;
  configs(): Map<string, DeviceConfigState>;
  /** Presence and traffic of every device seen (also published on `.../edge/<id>/devices`). */
  devices(): DeviceView[];
  monitor: FleetMonitor;
  /** The decoder threads and their queue. */
  pool: DecoderPool;
  /** The bundles served to devices over the air (the decoded ones), and their traffic. */
  registry: ModelRegistry;
  ota: OtaStats;
  rollouts: RolloutManager;
  /** `http://host:port` of /metrics and /devices, or null. */
  metricsUrl: string | null;
  close(): Promise<void>;
}

const DEDUPE_MS = 120_000;
const DEDUPE_MAX = 50_000;

export async function startEdge(opts: EdgeOptions): Promise<Edge> {
  const edgeId = opts.edgeId ?? 'edge-1';
  const base = opts.base ?? DEFAULT_BASE;
  const fleet = opts.fleet ?? '+';
  const statusFleet = opts.statusFleet ?? (fleet === '+' ? 'default' : fleet);
  const nWorkers = Math.max(1, opts.workers ?? 1);
  if (opts.bundles.length === 0) throw new Error('the edge needs at least one model bundle');

  const broker = await startBroker({ ...opts, deferOpen: true });
  const served = [...opts.bundles, ...(opts.staged ?? [])];
  const checker = new FrameChecker(served);
  let pool: DecoderPool;
  try {
    pool = await DecoderPool.start({
      bundles: served,
      workers: nWorkers,
      threads: opts.threadsPerWorker ?? 1,
      edgeId,
      maxQueue: opts.maxQueue ?? 256,
      maxBatch: opts.maxBatch,
      maxWaitMs: opts.maxWaitMs,
    });
  } catch (e) {
    await broker.close();
    throw e;
  }
  const statusTopic = edgeStatusTopic(statusFleet, edgeId, base);
  const { aedes } = broker;
  const stats: EdgeStats = { received: 0, results: 0, errors: 0, duplicates: 0, backlog: 0 };
  const answers = new AnswerCache(DEDUPE_MS, DEDUPE_MAX);
  const resultListeners: ((r: ResultMessage) => void)[] = [];
  const monitor = new FleetMonitor(edgeId, {
    backlog: () => pool.backlog,
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

  const publish = (topic: string, body: unknown, retain = false) =>
    broker.publish(topic, Buffer.from(JSON.stringify(body)), retain);

  // models over the air and rollouts (their callbacks run only once the edge is up)
  const registry = new ModelRegistry(opts.bundles, opts.staged);
  // fleet configs, published retained and acknowledged on response/config (below)
  const configStates = new Map<string, DeviceConfigState>();
  let fleetOf: FleetFile | null = null;
  const ota = await serveRegistry(broker, registry, {
    fleet,
    base,
    // a staged bundle goes only to a device whose config (with its rollout pin) names it
    mayFetchStaged: namedInConfig(
      () => fleetOf,
      registry,
      (d) => rollouts.overrideFor(d),
    ),
  });
  const jobsTopic = edgeTopic(statusFleet, edgeId, 'jobs', base);
  const rollouts = new RolloutManager(
    {
      fleet: () => fleetOf,
      registry,
      republish: (devices) => (fleetOf ? publishConfigs(fleetOf, devices) : Promise.resolve()),
      configState: (d) => configStates.get(d),
      changed: (jobs) =>
        background(publish(jobsTopic, { edgeId, ts: Date.now(), jobs }, true), 'jobs report'),
    },
    {
      stateFile: opts.stateDir ? join(opts.stateDir, 'jobs.json') : null,
      metrics: monitor.registry,
    },
  );

  /** Publish the answer to a frame and remember it for redeliveries. */
  const answer = (key: string | null, topic: string, body: unknown) => {
    const payload = Buffer.from(JSON.stringify(body));
    if (key) answers.answer(key, { topic, payload });
    return broker.publish(topic, payload);
  };

  const sendError = (
    key: string | null,
    fleetId: string,
    deviceId: string,
    frameId: number | null,
    code: ErrorCode,
    reason: string,
  ) => {
    stats.errors++;
    monitor.error(fleetId, deviceId, code);
    if (fleetId === fleetOf?.fleet) rollouts.error(deviceId);
    const msg = errorMessage(deviceId, frameId, code, reason, edgeId);
    log.debug({ deviceId, frameId, code, reason }, 'frame error');
    return answer(key, deviceTopic(fleetId, deviceId, 'error', base), msg);
  };

  const onFeatures = (packet: AedesPublishPacket, cb: () => void) => {
    handBack(cb); // our queue is the buffer
    // in a cluster every node sees every frame: the device's own node decodes it
    if (!fromThisNode(aedes, packet)) return;
    const now = Date.now();
    const t = parseTopic(packet.topic, base);
    if (!t || t.kind !== 'device') return;
    stats.received++;
    const payload = packet.payload as Buffer;
    monitor.frame(t.fleet, t.deviceId, payload.length, now);
    let frame;
    try {
      frame = checker.parse(payload, now);
    } catch (e) {
      const f = DecodeFailure.from(e, 'malformed-frame', null);
      background(sendError(null, t.fleet, t.deviceId, f.frameId, f.code, f.message), 'frame error');
      return;
    }
    const key = `${t.fleet}/${t.deviceId}/${frame.frameId}`;
    const prior = answers.seen(key, now);
    if (prior) {
      stats.duplicates++;
      if (prior.answer)
        background(broker.publish(prior.answer.topic, prior.answer.payload), 'answer');
      return;
    }
    const ok = pool.submit({
      deviceId: t.deviceId,
      frame,
      receivedAt: now,
      done: (err, result) => {
        if (err || !result) {
          const f = DecodeFailure.from(err, 'inference-failed', frame.frameId);
          background(
            sendError(key, t.fleet, t.deviceId, f.frameId, f.code, f.message),
            'frame error',
          );
          return;
        }
        stats.results++;
        const model = bundleRefString({ name: result.model, version: result.modelVersion });
        monitor.result(t.fleet, t.deviceId, model, result.codec, result.latency.edgeMs);
        if (t.fleet === fleetOf?.fleet)
          rollouts.result(t.deviceId, model, result.score, result.latency.edgeMs);
        for (const fn of resultListeners) {
          try {
            fn(result);
          } catch (e) {
            log.warn({ err: String(e) }, 'result listener failed');
          }
        }
        background(answer(key, deviceTopic(t.fleet, t.deviceId, 'result', base), result), 'answer');
      },
    });
    if (!ok) {
      answers.forget(key); // a refused frame may come again for a real try
      background(
        sendError(
          null,
          t.fleet,
          t.deviceId,
          frame.frameId,
          'overloaded',
          pool.closing ? 'edge stopping' : `decoder queue full (${pool.maxQueue} frames)`,
        ),
        'frame error',
      );
    }
  };

  await new Promise<void>((r) =>
    aedes.subscribe(deviceFilter('features', fleet, base), onFeatures, r),
  );

  const onConfigAck = (packet: AedesPublishPacket, cb: () => void) => {
    handBack(cb);
    const [, fl, , dev] = packet.topic.split('/');
    // configs are tracked for the fleet file's fleet only (a device of another fleet may
    // carry the same id)
    const st = dev !== undefined && fl === fleetOf?.fleet ? configStates.get(dev) : undefined;
    if (!st) return;
    try {
      const r = JSON.parse((packet.payload as Buffer).toString('utf8')) as OpResponse<ConfigAck>;
      st.applied = r.data?.configId ?? null;
      st.refused = r.status === 'error' ? r.error : null;
      st.refusedId = r.status === 'error' ? (r.data?.refused ?? null) : null;
    } catch {
      log.warn({ topic: packet.topic }, 'unreadable config answer');
    }
  };
  const ackFilter = deviceOpTopic(fleet, '+', 'response', 'config', base);
  await new Promise<void>((r) => aedes.subscribe(ackFilter, onConfigAck, r));
  /** Publish the effective configs of `devices` (with any rollout pin), each naming the
   * registry's bundle for it so the device can fetch it over the air. */
  const publishConfigs = async (f: FleetFile, devices: readonly string[]) => {
    for (const device of devices) {
      if (!(device in f.devices)) continue;
      const c = effectiveConfig(f, device, rollouts.overrideFor(device));
      const { fleet: fl, device: d, group, configId: settingsId, ...settings } = c;
      const bundle = registry.resolve(settings.model, settings.codec) ?? undefined;
      // the id names the bundle too: a new bundle for the same settings is a new config
      const configId = bundle ? configIdWithBundle(settingsId, bundle) : settingsId;
      const msg: ConfigMessage = {
        v: CONFIG_VERSION,
        configId,
        fleet: fl,
        device: d,
        group,
        settings,
        ...(bundle ? { bundle } : {}),
        ts: Date.now(),
      };
      const prev = configStates.get(device);
      const same = prev?.wanted === configId;
      configStates.set(device, {
        wanted: configId,
        applied: prev?.applied ?? null,
        // a refusal of an earlier config says nothing about this one
        refused: same ? (prev?.refused ?? null) : null,
        refusedId: same ? (prev?.refusedId ?? null) : null,
      });
      await publish(deviceTopic(f.fleet, device, 'config', base), msg, true);
    }
  };
  const applyFleet = async (f: FleetFile) => {
    if (fleet !== '+' && f.fleet !== fleet) {
      throw new Error(`fleet file is for fleet ${f.fleet}, this edge serves ${fleet}`);
    }
    const before = fleetOf;
    fleetOf = f;
    if (before && before.fleet !== f.fleet) configStates.clear();
    await publishConfigs(f, Object.keys(f.devices));
    for (const device of Object.keys(before?.devices ?? {})) {
      if (!(device in f.devices)) {
        configStates.delete(device);
        await broker.publish(
          deviceTopic(before!.fleet, device, 'config', base),
          Buffer.alloc(0),
          true,
        );
      }
    }
    log.info({ fleet: f.fleet, devices: Object.keys(f.devices).length }, 'fleet config published');
    rollouts.resume(); // queued jobs wait for a fleet file
  };
  // saved jobs first: their pins belong in the first configs published
  try {
    await rollouts.load();
    if (opts.fleetFile) await applyFleet(opts.fleetFile);
  } catch (e) {
    // a fleet file for another fleet: nothing started may stay open
    await rollouts.close();
    await ota.stop();
    await pool.close();
    await broker.close();
    throw e;
  }

  // operator commands: <base>/<fleet>/edge/<id>/request/<op> -> .../response/<op>
  const opsFilter = edgeOpTopic('+', edgeId, 'request', '+', base);
  const EDGE_OPS = ['rollout', 'rollback', 'jobs', 'models'] as const;
  const onEdgeOp = (packet: AedesPublishPacket, cb: () => void) => {
    handBack(cb);
    const t = parseOpTopic(packet.topic, base);
    if (!t || t.dir !== 'request') return;
    // every failure below is answered on the response topic of the request as sent
    serveEdgeOp(t, packet.payload).catch((e: unknown) =>
      limitedLog.warn(`edge-op:${t.fleet}`, { op: t.op, err: String(e) }, 'edge op not answered'),
    );
  };
  const serveEdgeOp = async (t: OpTopic, raw: Buffer | string): Promise<void> => {
    let id: string | null = null;
    const reply = (data: unknown, error: string | null = null) => {
      const body: OpResponse = { status: error ? 'error' : 'ok', data, error, id, ts: Date.now() };
      return publish(t.respondOn, body);
    };
    let body: Record<string, unknown>;
    try {
      const text = typeof raw === 'string' ? raw : raw.toString('utf8');
      const v: unknown = JSON.parse(text || '{}');
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
      body = v as Record<string, unknown>;
      id = typeof body.id === 'string' ? body.id.slice(0, 128) : null;
    } catch {
      return reply(null, 'request body is not a JSON object');
    }
    const op = (EDGE_OPS as readonly string[]).includes(t.op) ? t.op : null;
    if (!op) {
      const shown = JSON.stringify(t.op.slice(0, 64));
      return reply(null, `unknown op ${shown}; ops: ${EDGE_OPS.join(', ')}`);
    }
    const served = fleetOf?.fleet ?? statusFleet;
    if (t.fleet !== served) {
      return reply(null, `this edge runs fleet ${served}, not ${t.fleet.slice(0, 64)}`);
    }
    try {
      switch (op) {
        case 'rollout':
          return await reply(rollouts.create(body.spec as RolloutSpec));
        case 'rollback':
          return await reply(await rollouts.rollback(String(body.jobId)));
        case 'jobs':
          return await reply(rollouts.list());
        case 'models':
          return await reply(registry.list());
      }
    } catch (e) {
      if (!(e instanceof RolloutError))
        limitedLog.warn(`edge-op-failed:${op}`, { op, err: String(e) }, 'edge op failed');
      return reply(null, e instanceof Error ? e.message.slice(0, 1024) : String(e).slice(0, 1024));
    }
  };
  await new Promise<void>((r) => aedes.subscribe(opsFilter, onEdgeOp, r));

  // presence: the devices' retained birth / death / will
  const onStatus = (packet: AedesPublishPacket, cb: () => void) => {
    handBack(cb);
    const t = parseTopic(packet.topic, base);
    if (!t || t.kind !== 'device') return;
    try {
      const st = JSON.parse((packet.payload as Buffer).toString('utf8')) as DeviceStatus;
      if ((st.state === 'online' || st.state === 'offline') && typeof st.seq === 'number') {
        monitor.status(t.fleet, t.deviceId, st);
      }
    } catch {
      // an empty (cleared) or foreign status: nothing to track
    }
  };
  const statusFilter = deviceFilter('status', fleet, base);
  await new Promise<void>((r) => aedes.subscribe(statusFilter, onStatus, r));

  // a cluster (cluster.ts): the answers other nodes give are kept as our own, so a device
  // that moves here and re-sends an answered frame gets that answer, not a second decode;
  // and rollouts (run on one node) see the results of the whole fleet
  const answerFilters =
    opts.redis?.mode === 'cluster'
      ? [deviceFilter('result', fleet, base), deviceFilter('error', fleet, base)]
      : [];
  const onOtherAnswer = (packet: AedesPublishPacket, cb: () => void) => {
    handBack(cb);
    if (fromThisNode(aedes, packet)) return;
    const t = parseTopic(packet.topic, base);
    if (!t || t.kind !== 'device') return;
    const payload = packet.payload as Buffer;
    const r = t.channel === 'result' ? parseResult(payload) : undefined;
    const e = r ? undefined : parseError(payload);
    const frameId = r?.frameId ?? e?.frameId;
    // a refusal for overload is not an answer: the frame may come again
    if (frameId === undefined || frameId === null || e?.code === 'overloaded') return;
    const key = `${t.fleet}/${t.deviceId}/${frameId}`;
    answers.remember(key, { topic: packet.topic, payload }, Date.now());
    if (t.fleet !== fleetOf?.fleet) return;
    if (r) {
      const model = bundleRefString({ name: r.model, version: r.modelVersion });
      rollouts.result(t.deviceId, model, r.score, r.latency.edgeMs);
    } else rollouts.error(t.deviceId);
  };
  for (const f of answerFilters) {
    await new Promise<void>((r) => aedes.subscribe(f, onOtherAnswer, r));
  }
  const devicesTopic = edgeTopic(statusFleet, edgeId, 'devices', base);
  const publishDevices = () =>
    publish(devicesTopic, { edgeId, ts: Date.now(), devices: monitor.snapshot() }, true);
  const devicesTimer = setInterval(() => background(publishDevices(), 'devices report'), 2000);
  devicesTimer.unref();

  let metrics: HttpServer | null = null;
  let metricsUrl: string | null = null;
  if (opts.metricsPort !== undefined && opts.metricsPort !== null) {
    const text = (res: ServerResponse, code: number, body: string) =>
      res.writeHead(code, { 'content-type': 'text/plain' }).end(body);
    const serve = (req: IncomingMessage, res: ServerResponse) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') return text(res, 405, 'GET only\n');
      if (path === '/metrics') {
        monitor.registry.metrics().then(
          (body) => res.writeHead(200, { 'content-type': monitor.registry.contentType }).end(body),
          (e: unknown) => text(res, 500, `${String(e).slice(0, 1024)}\n`),
        );
      } else if (path === '/devices') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ edgeId, ts: Date.now(), devices: monitor.snapshot() }));
      } else {
        text(res, 404, 'splitfleet edge: /metrics (Prometheus) or /devices (JSON)\n');
      }
    };
    metrics = createHttpServer((req, res) => {
      try {
        serve(req, res);
      } catch (e) {
        limitedLog.warn('metrics-http', { err: String(e) }, 'metrics request failed');
        if (!res.headersSent) text(res, 500, 'internal error\n');
        else res.destroy();
      }
    });
    const host = opts.httpHost ?? '127.0.0.1';
    metricsUrl = `http://${shownHost(host)}:${await listen(metrics, opts.metricsPort, host)}`;
  }
  const models = opts.bundles.map((b) => bundleRefString(b.manifest));
  await publish(
    statusTopic,
    { state: 'online', ts: Date.now(), models, workers: nWorkers } satisfies EdgeStatus,
    true,
  );
  broker.open(); // every subscription of the edge is in place
  log.info({ url: broker.url, wsUrl: broker.wsUrl, models, workers: nWorkers }, 'edge up');

  return {
    broker,
    url: broker.url,
    wsUrl: broker.wsUrl,
    edgeId,
    stats: () => ({ ...stats, backlog: pool.backlog }),
    on: (_event, fn) => void resultListeners.push(fn),
    applyFleet,
    configs: () => new Map([...configStates].map(([k, v]) => [k, { ...v }])),
    devices: () => monitor.snapshot(),
    monitor,
    pool,
    registry,
    ota: ota.stats,
    rollouts,
    metricsUrl,
    async close() {
      clearInterval(devicesTimer);
      await rollouts.close();
      await ota.stop();
      await new Promise<void>((r) => aedes.unsubscribe(opsFilter, onEdgeOp, r));
      if (metrics) await new Promise<void>((r) => metrics!.close(() => r()));
      await new Promise<void>((r) => aedes.unsubscribe(statusFilter, onStatus, r));
      for (const f of answerFilters) {
        await new Promise<void>((r) => aedes.unsubscribe(f, onOtherAnswer, r));
      }
      await new Promise<void>((r) => aedes.unsubscribe(ackFilter, onConfigAck, r));
      // frames keep coming until the broker closes: the pool answers what it holds and
      // refuses the rest with an error (a frame taken after unsubscribing would be lost)
      await pool.close();
      await publish(statusTopic, { state: 'offline', ts: Date.now() } satisfies EdgeStatus, true);
      await new Promise<void>((r) =>
        aedes.unsubscribe(deviceFilter('features', fleet, base), onFeatures, r),
      );
      await broker.close();
    },
  };
}
