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
import { onnxEngine } from '../core/engine/onnx.js';
import type { Engine } from '../core/engine/engine.js';
import type { Bundle } from '../core/model/bundle.js';
import {
  RESULT_VERSION,
  CONFIG_VERSION,
  type ConfigAck,
  type ConfigMessage,
  type EdgeStatus,
  type ErrorCode,
  type OpResponse,
  type ErrorMessage,
  type ResultMessage,
} from '../core/protocol/messages.js';
import {
  DEFAULT_BASE,
  deviceFilter,
  deviceOpTopic,
  deviceTopic,
  edgeStatusTopic,
  parseTopic,
} from '../core/protocol/topics.js';
import { log } from '../core/util/log.js';
import { effectiveConfigs } from '../fleet-config/effective.js';
import type { FleetFile } from '../fleet-config/schema.js';
import { startBroker, type BrokerOptions, type EdgeBroker } from './broker.js';
import { DecodeFailure, FrameDecoder } from './decoder.js';
import { DecoderPool } from './pool.js';
import { AnswerCache } from './answers.js';

export interface EdgeOptions extends BrokerOptions {
  edgeId?: string;
  /** Fleet whose devices this edge serves; '+' serves every fleet. */
  fleet?: string;
  /** The fleet the edge's own status is published under. */
  statusFleet?: string;
  base?: string;
  bundles: readonly Bundle[];
  workers?: number;
  threadsPerWorker?: number;
  maxQueue?: number;
  engine?: Engine;
  /** A checked fleet file (fleet-config/load.ts): each device's effective config is
   * published retained on its config topic. */
  fleetFile?: FleetFile;
}

/** What the edge wants a device to run and what the device says it runs. */
export interface DeviceConfigState {
  wanted: string;
  applied: string | null;
  /** The reason of the device's last refusal, if its last answer was one. */
  refused: string | null;
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
  close(): Promise<void>;
}

const DEDUPE_MS = 120_000;
const DEDUPE_MAX = 50_000;

export async function startEdge(opts: EdgeOptions): Promise<Edge> {
  const edgeId = opts.edgeId ?? 'edge-1';
  const base = opts.base ?? DEFAULT_BASE;
  const fleet = opts.fleet ?? '+';
  const statusFleet = opts.statusFleet ?? (fleet === '+' ? 'default' : fleet);
  const engine = opts.engine ?? onnxEngine;
  const nWorkers = Math.max(1, opts.workers ?? 1);
  if (opts.bundles.length === 0) throw new Error('the edge needs at least one model bundle');

  const broker = await startBroker(opts);
  const decoders: FrameDecoder[] = [];
  try {
    for (let i = 0; i < nWorkers; i++) {
      decoders.push(
        await FrameDecoder.create(opts.bundles, engine, {
          threads: opts.threadsPerWorker ?? 1,
          edgeId,
        }),
      );
    }
  } catch (e) {
    for (const d of decoders) await d.close();
    await broker.close();
    throw e;
  }
  const pool = new DecoderPool(decoders, opts.maxQueue ?? 256);
  const statusTopic = edgeStatusTopic(statusFleet, edgeId, base);
  const { aedes } = broker;
  const stats: EdgeStats = { received: 0, results: 0, errors: 0, duplicates: 0, backlog: 0 };
  const answers = new AnswerCache(DEDUPE_MS, DEDUPE_MAX);
  const resultListeners: ((r: ResultMessage) => void)[] = [];

  const publishRaw = (topic: string, payload: Buffer, retain = false) =>
    new Promise<void>((resolve) => {
      aedes.publish(
        {
          cmd: 'publish',
          topic,
          payload,
          qos: 1,
          retain,
          dup: false,
        },
        (err) => {
          if (err) log.warn({ err, topic }, 'publish failed');
          resolve();
        },
      );
    });
  const publish = (topic: string, body: unknown, retain = false) =>
    publishRaw(topic, Buffer.from(JSON.stringify(body)), retain);

  /** Publish the answer to a frame and remember it for redeliveries. */
  const answer = (key: string | null, topic: string, body: unknown) => {
    const payload = Buffer.from(JSON.stringify(body));
    if (key) answers.answer(key, { topic, payload });
    return publishRaw(topic, payload);
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
    const msg: ErrorMessage = {
      v: RESULT_VERSION,
      deviceId,
      frameId,
      code,
      reason,
      edgeId,
      ts: Date.now(),
    };
    log.debug({ deviceId, frameId, code, reason }, 'frame error');
    return answer(key, deviceTopic(fleetId, deviceId, 'error', base), msg);
  };

  const onFeatures = (packet: AedesPublishPacket, cb: () => void) => {
    cb(); // hand the packet back to the broker at once; our queue is the buffer
    const now = Date.now();
    const t = parseTopic(packet.topic, base);
    if (!t || t.kind !== 'device') return;
    stats.received++;
    const payload = packet.payload as Buffer;
    let parsed;
    try {
      parsed = decoders[0]!.parse(payload, now);
    } catch (e) {
      const f =
        e instanceof DecodeFailure ? e : new DecodeFailure('malformed-frame', String(e), null);
      void sendError(null, t.fleet, t.deviceId, f.frameId, f.code, f.message);
      return;
    }
    const { frame } = parsed;
    const key = `${t.fleet}/${t.deviceId}/${frame.frameId}`;
    const prior = answers.seen(key, now);
    if (prior) {
      stats.duplicates++;
      if (prior.answer) void publishRaw(prior.answer.topic, prior.answer.payload);
      return;
    }
    const ok = pool.submit({
      deviceId: t.deviceId,
      frame,
      receivedAt: now,
      done: (err, result) => {
        if (err || !result) {
          const f =
            err instanceof DecodeFailure
              ? err
              : new DecodeFailure('inference-failed', String(err), frame.frameId);
          void sendError(key, t.fleet, t.deviceId, f.frameId, f.code, f.message);
          return;
        }
        stats.results++;
        for (const fn of resultListeners) {
          try {
            fn(result);
          } catch (e) {
            log.warn({ err: String(e) }, 'result listener failed');
          }
        }
        void answer(key, deviceTopic(t.fleet, t.deviceId, 'result', base), result);
      },
    });
    if (!ok) {
      answers.forget(key); // a refused frame may come again for a real try
      void sendError(
        null,
        t.fleet,
        t.deviceId,
        frame.frameId,
        'overloaded',
        `decoder queue full (${pool.maxQueue} frames)`,
      );
    }
  };

  await new Promise<void>((r) =>
    aedes.subscribe(deviceFilter('features', fleet, base), onFeatures, r),
  );

  // fleet configs: published retained, acknowledged on response/config
  const configStates = new Map<string, DeviceConfigState>();
  let fleetOf: FleetFile | null = null;
  const onConfigAck = (packet: AedesPublishPacket, cb: () => void) => {
    cb();
    const dev = packet.topic.split('/')[3];
    const st = dev !== undefined ? configStates.get(dev) : undefined;
    if (!st) return;
    try {
      const r = JSON.parse((packet.payload as Buffer).toString('utf8')) as OpResponse<ConfigAck>;
      st.applied = r.data?.configId ?? null;
      st.refused = r.status === 'error' ? r.error : null;
    } catch {
      log.warn({ topic: packet.topic }, 'unreadable config answer');
    }
  };
  const ackFilter = deviceOpTopic(fleet, '+', 'response', 'config', base);
  await new Promise<void>((r) => aedes.subscribe(ackFilter, onConfigAck, r));
  const applyFleet = async (f: FleetFile) => {
    if (fleet !== '+' && f.fleet !== fleet) {
      throw new Error(`fleet file is for fleet ${f.fleet}, this edge serves ${fleet}`);
    }
    const before = fleetOf;
    fleetOf = f;
    for (const [device, c] of effectiveConfigs(f)) {
      const { fleet: fl, device: d, group, configId, ...settings } = c;
      const msg: ConfigMessage = {
        v: CONFIG_VERSION,
        configId,
        fleet: fl,
        device: d,
        group,
        settings,
        ts: Date.now(),
      };
      const prev = configStates.get(device);
      configStates.set(device, {
        wanted: configId,
        applied: prev?.applied ?? null,
        refused: prev?.refused ?? null,
      });
      await publish(deviceTopic(f.fleet, device, 'config', base), msg, true);
    }
    for (const device of Object.keys(before?.devices ?? {})) {
      if (!(device in f.devices)) {
        configStates.delete(device);
        await publishRaw(deviceTopic(before!.fleet, device, 'config', base), Buffer.alloc(0), true);
      }
    }
    log.info({ fleet: f.fleet, devices: Object.keys(f.devices).length }, 'fleet config published');
  };
  if (opts.fleetFile) await applyFleet(opts.fleetFile);
  const models = opts.bundles.map((b) => `${b.manifest.name}@${b.manifest.version}`);
  await publish(
    statusTopic,
    { state: 'online', ts: Date.now(), models, workers: nWorkers } satisfies EdgeStatus,
    true,
  );
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
    async close() {
      await new Promise<void>((r) =>
        aedes.unsubscribe(deviceFilter('features', fleet, base), onFeatures, r),
      );
      await new Promise<void>((r) => aedes.unsubscribe(ackFilter, onConfigAck, r));
      await pool.close();
      await publish(statusTopic, { state: 'offline', ts: Date.now() } satisfies EdgeStatus, true);
      await broker.close();
    },
  };
}
