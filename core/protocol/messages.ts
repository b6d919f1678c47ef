/**
 * JSON messages any MQTT client can read: results, errors and presence.
 */

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
  /** Edge-side times in milliseconds: entropy/codec decode, tail inference, receive->publish. */
  latency: { decodeMs: number; tailMs: number; edgeMs: number; queueMs: number };
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

/** Retained on `.../device/<id>/status` (birth) and set as the last will (death). */
export interface DeviceStatus {
  state: 'online' | 'offline';
  /** Birth/death sequence (Sparkplug bdSeq): a will with an older seq than the live birth is stale. */
  seq: number;
  ts: number;
  model?: string;
  codec?: string;
  point?: number;
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

/** Parse a result payload; undefined when it is not a v1 result. */
export function parseResult(payload: Uint8Array | string): ResultMessage | undefined {
  try {
    const v: unknown = JSON.parse(
      typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8'),
    );
    if (
      isObj(v) &&
      v.v === RESULT_VERSION &&
      typeof v.frameId === 'number' &&
      typeof v.classIndex === 'number'
    ) {
      return v as unknown as ResultMessage;
    }
  } catch {
    // fall through
  }
  return undefined;
}

export function parseError(payload: Uint8Array | string): ErrorMessage | undefined {
  try {
    const v: unknown = JSON.parse(
      typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8'),
    );
    if (isObj(v) && v.v === RESULT_VERSION && typeof v.code === 'string' && 'frameId' in v) {
      return v as unknown as ErrorMessage;
    }
  } catch {
    // fall through
  }
  return undefined;
}
