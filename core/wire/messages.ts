/**
 * JSON messages any MQTT client can read: results, errors and presence.
 */
import { isBundleRef, type BundleRef } from '../model/ref.js';

export const RESULT_VERSION = 1;

export interface TopK {
  classIndex: number;
  label: string;
  score: number;
}

/** Published on `.../device/<id>/result`. */
export interface ResultMessage {
  v: typeof RESULT_VERSION;
  deviceId: string;
  frameId: number;
  classIndex: number;
  label: string;
  /** Softmax probability of the top class. */
  score: number;
  topk: TopK[];
  modelId: number;
  modelVersion: number;
  model: string;
  codec: string;
  point: number;
  payloadBytes: number;
  captureTs: number;
  /** The frame's tag (the source's name for the image), when the device sent one. */
  source?: string;
  /** Edge-side times in milliseconds: entropy/codec decode, tail inference, receive->publish. */
  /** Edge timings (ms); `batch`: frames run through the tail together with this one. */
  latency: { decodeMs: number; tailMs: number; edgeMs: number; queueMs: number; batch?: number };
  edgeId: string;
}

/** The codes of an error message (the one list). */
export const ERROR_CODES = [
  'malformed-frame',
  'unknown-model',
  'unknown-codec',
  'corrupt-payload',
  'overloaded',
  'inference-failed',
  'unknown-context',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Published on `.../device/<id>/error`. frameId is null when the frame was unreadable. */
export interface ErrorMessage {
  v: typeof RESULT_VERSION;
  deviceId: string;
  frameId: number | null;
  code: ErrorCode;
  reason: string;
  edgeId: string;
  ts: number;
  /** `unknown-context`: the wire v2 context the frame named (announce it again). */
  context?: number;
}

/** Longest error reason sent to anyone (UTF-8 bytes). Reasons built from what a sender
 * sent are cut to it, so a bad message never earns a large answer. */
export const MAX_REASON_BYTES = 1024;

/** `reason` itself when it fits in `max` UTF-8 bytes, else its start and how long it was. */
export function boundReason(reason: string, max: number = MAX_REASON_BYTES): string {
  // a string never has fewer UTF-8 bytes than UTF-16 units: test the cheap bound first
  if (reason.length <= max && Buffer.byteLength(reason, 'utf8') <= max) return reason;
  const note = ` ... (cut, ${reason.length} chars in all)`;
  const budget = Math.max(0, max - note.length);
  let out = '';
  let bytes = 0;
  for (const ch of reason) {
    const c = ch.codePointAt(0)!;
    const n = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    if (bytes + n > budget) break;
    out += ch;
    bytes += n;
  }
  return out + note;
}

export function errorMessage(
  deviceId: string,
  frameId: number | null,
  code: ErrorCode,
  reason: string,
  edgeId: string,
  context?: number,
): ErrorMessage {
  return {
    v: RESULT_VERSION,
    deviceId,
    frameId,
    code,
    reason: boundReason(reason),
    edgeId,
    ts: Date.now(),
    ...(context !== undefined ? { context } : {}),
  };
}

/** Retained on `.../device/<id>/status` (birth) and set as the last will (death). */
export interface DeviceStatus {
  state: 'online' | 'offline';
  /** Birth/death sequence (Sparkplug bdSeq): a will with an older seq than the live birth is stale. */
  seq: number;
  ts: number;
  model?: string;
  codec?: string;
  point?: number;
  /** The config it runs (ConfigMessage.configId); null: its start-up flags. */
  configId?: string | null;
}

/** Retained on `.../edge/<id>/status`. */
export interface EdgeStatus {
  state: 'online' | 'offline';
  ts: number;
  models?: string[];
  workers?: number;
}

export function softmaxTopK(logits: Float32Array, labels: readonly string[], k: number): TopK[] {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  const exp = Array.from(logits, (v) => Math.exp(v - max));
  const sum = exp.reduce((a, b) => a + b, 0);
  return exp
    .map((e, i) => ({ classIndex: i, label: labels[i] ?? String(i), score: e / sum }))
    .sort((a, b) => b.score - a.score)
    .slice(0, k)
    .map((t) => ({ ...t, score: Math.round(t.score * 1e4) / 1e4 }));
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The JSON value of a payload, or undefined when it is not JSON. */
function jsonOf(payload: Uint8Array | string): unknown {
  try {
    return JSON.parse(
      typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8'),
    );
  } catch {
    return undefined;
  }
}

// Field readers: each returns the field, typed, or throws Invalid (caught by the parsers,
// which answer undefined). A parser builds its message from checked fields only.
class Invalid extends Error {}
const num = (v: unknown): number => {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Invalid();
  return v;
};
const int = (v: unknown): number => {
  if (!Number.isSafeInteger(v)) throw new Invalid();
  return v as number;
};
const str = (v: unknown, max = 4096): string => {
  if (typeof v !== 'string' || v.length > max) throw new Invalid();
  return v;
};
const orNull =
  <T>(read: (v: unknown) => T) =>
  (v: unknown): T | null =>
    v === null ? null : read(v);
const obj = (v: unknown): Record<string, unknown> => {
  if (!isObj(v)) throw new Invalid();
  return v;
};
function checked<T>(payload: Uint8Array | string, build: (v: Record<string, unknown>) => T) {
  try {
    return build(obj(jsonOf(payload)));
  } catch (e) {
    if (e instanceof Invalid) return undefined;
    throw e;
  }
}

/** Parse a result payload; undefined when it is not a v1 result. */
export function parseResult(payload: Uint8Array | string): ResultMessage | undefined {
  return checked(payload, (v) => {
    if (v.v !== RESULT_VERSION) throw new Invalid();
    const l = obj(v.latency);
    const topk = v.topk;
    if (!Array.isArray(topk) || topk.length > 1000) throw new Invalid();
    const r: ResultMessage = {
      v: RESULT_VERSION,
      deviceId: str(v.deviceId, 64),
      frameId: int(v.frameId),
      classIndex: int(v.classIndex),
      label: str(v.label),
      score: num(v.score),
      topk: topk.map((t) => {
        const o = obj(t);
        return { classIndex: int(o.classIndex), label: str(o.label), score: num(o.score) };
      }),
      modelId: int(v.modelId),
      modelVersion: int(v.modelVersion),
      model: str(v.model, 256),
      codec: str(v.codec, 256),
      point: int(v.point),
      payloadBytes: int(v.payloadBytes),
      captureTs: num(v.captureTs),
      latency: {
        decodeMs: num(l.decodeMs),
        tailMs: num(l.tailMs),
        edgeMs: num(l.edgeMs),
        queueMs: num(l.queueMs),
        ...(l.batch !== undefined ? { batch: int(l.batch) } : {}),
      },
      edgeId: str(v.edgeId, 64),
    };
    if (v.source !== undefined) r.source = str(v.source, 256);
    return r;
  });
}

/** Parse an error payload; undefined when it is not a v1 error. */
export function parseError(payload: Uint8Array | string): ErrorMessage | undefined {
  return checked(payload, (v) => {
    if (v.v !== RESULT_VERSION) throw new Invalid();
    const code = ERROR_CODES.find((c) => c === v.code);
    if (!code) throw new Invalid();
    const e: ErrorMessage = {
      v: RESULT_VERSION,
      deviceId: str(v.deviceId, 64),
      frameId: orNull(int)(v.frameId),
      code,
      reason: boundReason(str(v.reason, 1 << 20)),
      edgeId: str(v.edgeId, 64),
      ts: num(v.ts),
    };
    if (v.context !== undefined) {
      const c = int(v.context);
      if (c < 0 || c > 255) throw new Invalid();
      e.context = c;
    }
    return e;
  });
}

/** Parse a device's status (birth, death, will); undefined when it is not one. */
export function parseDeviceStatus(payload: Uint8Array | string): DeviceStatus | undefined {
  return checked(payload, (v) => {
    if (v.state !== 'online' && v.state !== 'offline') throw new Invalid();
    const s: DeviceStatus = {
      state: v.state,
      seq: num(v.seq),
      ts: v.ts === undefined ? Date.now() : num(v.ts),
    };
    if (v.model !== undefined) s.model = str(v.model, 256);
    if (v.codec !== undefined) s.codec = str(v.codec, 256);
    if (v.point !== undefined) s.point = int(v.point);
    if (v.configId !== undefined) s.configId = orNull((x) => str(x, 256))(v.configId);
    return s;
  });
}

export const CONFIG_VERSION = 1;

/** The settings a device runs (fleet-config/schema.ts holds their JSON Schema). */
export interface DeviceSettings {
  /** Model bundle: a zoo name, optionally `name@version`. */
  model: string;
  /** Feature codec name (`splitfleet models` lists them). */
  codec: string;
  /** Operating point index of the codec. */
  point: number;
  /** Latency goal in ms: the agent picks the best point that meets it (null: fixed point). */
  latencyGoalMs: number | null;
  /** The edge's cap on the device's uplink, kbit/s with protocol overhead (null: none). */
  maxKbps: number | null;
  /** Frames per second the agent captures. */
  fps: number;
  /** Image source: `sample`, a folder or a .tar.gz on the device. */
  source: string;
  /** Name of the device's credentials entry in the edge's credential store. */
  credentials: string | null;
  /** Inference engine of the head: auto, onnx, tfjs, tfjs-node, tfjs-wasm
   * (core/engine/select.ts). Absent (an edge before this setting): the agent's own. */
  engine?: string;
  /** Wire format (docs/PROTOCOL.md): null or absent, the agent's own (`--wire`). */
  wire?: WireFormat | null;
  /** Wire v2: several frames per PUBLISH (null: off). Absent: the agent's own. */
  batch?: BatchSetting | null;
  /** Wire v2: classes in each compact answer, 1..4. Absent: the agent's own. */
  topk?: number;
}

/** The wire formats an agent speaks. */
export const WIRE_FORMATS = ['v1', 'v2'] as const;
export type WireFormat = (typeof WIRE_FORMATS)[number];

/** Wire v2 batching: at most `maxFrames` frames per PUBLISH, none waiting more than
 * `maxDelayMs` for the others. */
export interface BatchSetting {
  maxFrames: number;
  maxDelayMs: number;
}

/** Bounds of the batching setting (the fleet file's schema and every reader use them).
 * maxFrames is frame-v2.ts' V2_MAX_BATCH and SETTING_MAX_TOPK context.ts' MAX_COMPACT_TOPK
 * (a test holds them equal): this module is below both, it cannot import them. */
export const BATCH_BOUNDS = {
  minFrames: 2,
  maxFrames: 255,
  maxDelayMs: 10_000,
} as const;
export const SETTING_MAX_TOPK = 4;

/** Why `b` is not a batching setting, or null. */
export function batchProblem(b: BatchSetting): string | null {
  const { minFrames, maxFrames, maxDelayMs } = BATCH_BOUNDS;
  if (!Number.isInteger(b.maxFrames) || b.maxFrames < minFrames || b.maxFrames > maxFrames)
    return `batch maxFrames must be an integer in ${minFrames}..${maxFrames}`;
  if (!Number.isFinite(b.maxDelayMs) || b.maxDelayMs < 0 || b.maxDelayMs > maxDelayMs)
    return `batch maxDelayMs must be in 0..${maxDelayMs}`;
  return null;
}

/** Why `k` is not a top-k setting, or null. */
export function topkProblem(k: number): string | null {
  return Number.isInteger(k) && k >= 1 && k <= SETTING_MAX_TOPK
    ? null
    : `topk must be an integer in 1..${SETTING_MAX_TOPK}`;
}

/** Retained on `.../device/<id>/config`: the effective config the edge wants it to run. */
export interface ConfigMessage {
  v: typeof CONFIG_VERSION;
  /** Names this config (a hash of its content); the device acknowledges it. */
  configId: string;
  fleet: string;
  device: string;
  group: string | null;
  settings: DeviceSettings;
  /** The bundle the edge's registry serves for these settings (fetched over the air when
   * the device does not have it); absent when the registry has none. */
  bundle?: BundleRef;
  ts: number;
}

/** `.../response/<op>`: zigbee2mqtt-style answer; `id` echoes the request's correlation id. */
export interface OpResponse<T = unknown> {
  status: 'ok' | 'error';
  data: T | null;
  error: string | null;
  id: string | null;
  ts: number;
}

/** `data` of `response/config`: the config now running (and the one refused, if any). */
export interface ConfigAck {
  configId: string | null;
  refused: string | null;
}

/** A model as a config names it: `name` or `name@version` (the fleet file's rule; never a
 * path, so a config cannot make a device read a folder of its choice). */
const MODEL_RE = /^[A-Za-z0-9_.-]{1,64}(@[0-9]{1,6})?$/;

/** The wire settings of a config's `settings`, each only when present; out of range
 * throws Invalid (the whole config is then unreadable). */
function wireSettings(st: Record<string, unknown>): Partial<DeviceSettings> {
  const out: Partial<DeviceSettings> = {};
  if (st.wire !== undefined) {
    const w = WIRE_FORMATS.find((f) => f === st.wire);
    if (!w && st.wire !== null) throw new Invalid();
    out.wire = w ?? null;
  }
  if (st.batch !== undefined) {
    if (st.batch === null) out.batch = null;
    else {
      const b = obj(st.batch);
      const batch = { maxFrames: num(b.maxFrames), maxDelayMs: num(b.maxDelayMs) };
      if (batchProblem(batch) !== null || Object.keys(b).length !== 2) throw new Invalid();
      out.batch = batch;
    }
  }
  if (st.topk !== undefined) {
    const k = int(st.topk);
    if (topkProblem(k) !== null) throw new Invalid();
    out.topk = k;
  }
  return out;
}

/** A device's settings (a config's, a devices report's), each field checked; throws
 * Invalid. */
function settingsOf(v: unknown): DeviceSettings {
  const st = obj(v);
  const model = str(st.model, 80);
  if (!MODEL_RE.test(model)) throw new Invalid();
  return {
    model,
    codec: str(st.codec, 64),
    point: int(st.point),
    latencyGoalMs: st.latencyGoalMs === undefined ? null : orNull(num)(st.latencyGoalMs),
    maxKbps: st.maxKbps === undefined ? null : orNull(num)(st.maxKbps),
    fps: num(st.fps),
    source: st.source === undefined ? 'sample' : str(st.source, 1024),
    credentials: st.credentials === undefined ? null : orNull((x) => str(x, 64))(st.credentials),
    ...(st.engine !== undefined ? { engine: str(st.engine, 32) } : {}),
    ...wireSettings(st),
  };
}

/** A device's settings as a config or the edge's devices report carries them, checked;
 * undefined when they are not. */
export function parseSettings(v: unknown): DeviceSettings | undefined {
  try {
    return settingsOf(v);
  } catch (e) {
    if (e instanceof Invalid) return undefined;
    throw e;
  }
}

export function parseConfig(payload: Uint8Array | string): ConfigMessage | undefined {
  return checked(payload, (v) => {
    if (v.v !== CONFIG_VERSION) throw new Invalid();
    const settings = settingsOf(v.settings);
    const bundle = v.bundle;
    if (bundle !== undefined && !isBundleRef(bundle)) throw new Invalid();
    const c: ConfigMessage = {
      v: CONFIG_VERSION,
      configId: str(v.configId, 256),
      fleet: str(v.fleet, 64),
      device: str(v.device, 64),
      group: orNull((x) => str(x, 64))(v.group ?? null),
      settings,
      ts: v.ts === undefined ? Date.now() : num(v.ts),
    };
    if (bundle !== undefined && isBundleRef(bundle)) c.bundle = bundle;
    return c;
  });
}
