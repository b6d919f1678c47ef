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

export type ErrorCode =
  | 'malformed-frame'
  | 'unknown-model'
  | 'unknown-codec'
  | 'corrupt-payload'
  | 'overloaded'
  | 'inference-failed';

/** Published on `.../device/<id>/error`. frameId is null when the frame was unreadable. */
export interface ErrorMessage {
  v: typeof RESULT_VERSION;
  deviceId: string;
  frameId: number | null;
  code: ErrorCode;
  reason: string;
  edgeId: string;
  ts: number;
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
): ErrorMessage {
  return {
    v: RESULT_VERSION,
    deviceId,
    frameId,
    code,
    reason: boundReason(reason),
    edgeId,
    ts: Date.now(),
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

/** Parse a result payload; undefined when it is not a v1 result. */
export function parseResult(payload: Uint8Array | string): ResultMessage | undefined {
  const v = jsonOf(payload);
  return isObj(v) &&
    v.v === RESULT_VERSION &&
    typeof v.frameId === 'number' &&
    typeof v.classIndex === 'number'
    ? (v as unknown as ResultMessage)
    : undefined;
}

export function parseError(payload: Uint8Array | string): ErrorMessage | undefined {
  const v = jsonOf(payload);
  return isObj(v) && v.v === RESULT_VERSION && typeof v.code === 'string' && 'frameId' in v
    ? (v as unknown as ErrorMessage)
    : undefined;
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

export function parseConfig(payload: Uint8Array | string): ConfigMessage | undefined {
  const v = jsonOf(payload);
  return isObj(v) &&
    v.v === CONFIG_VERSION &&
    typeof v.configId === 'string' &&
    isObj(v.settings) &&
    typeof v.settings.codec === 'string' &&
    typeof v.settings.model === 'string' &&
    MODEL_RE.test(v.settings.model) &&
    (v.bundle === undefined || isBundleRef(v.bundle)) &&
    typeof v.settings.point === 'number' &&
    typeof v.settings.fps === 'number'
    ? (v as unknown as ConfigMessage)
    : undefined;
}
