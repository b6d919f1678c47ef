/**
 * Wire v2 sessions: the context a device announces, the edge's acknowledgement, and the
 * compact answer a device gets for each frame.
 *
 *   <base>/<fleet>/device/<id>/ctx   device -> edge   JSON ContextAnnounce, QoS 1, not retained
 *   <base>/<fleet>/device/<id>/a     edge -> device   msgpack: a ContextAck (a map) or a
 *                                                     compact answer (an array), QoS 1
 *
 * An announce says how the device wants its answers (compact, with or without top-k) and
 * may define one stream context (frame-v2.ts StreamContext: model, codec, point, shape,
 * frame id base). It carries the device's clock, from which the edge takes the offset it
 * unwraps v2 capture times with. Announces are not retained: a context belongs to one
 * connection, and the clock offset is only right for an announce received as it is sent
 * (a retained one would be handed to a restarted edge long after).
 *
 * A compact answer is a msgpack array `[frameId, classIndex, score]` with the score in
 * ten-thousandths (0..10000), then, when the device asked for top-k > 1, a flat array of
 * the next classes and scores `[c2, s2, c3, s3, ...]`: at most 32 bytes.
 */
import { Packr } from 'msgpackr';
import type { StreamContext } from './frame-v2.js';
import { validateFields, FrameError } from './frame.js';
import { boundReason } from './messages.js';
import { decodeMsgpack, MsgpackError } from './msgpack.js';

export const CONTEXT_VERSION = 1;
/** Most classes a compact answer carries (top-1 and three more keep it within 32 B). */
export const MAX_COMPACT_TOPK = 4;
/** Longest compact answer (bytes). */
export const MAX_COMPACT_ANSWER_BYTES = 32;

export type AnswerMode = 'compact' | 'full';

/** Published on `.../ctx`. `id` names this announce in its ack. */
export interface ContextAnnounce {
  v: typeof CONTEXT_VERSION;
  id: number;
  /** The device's clock at sending (Unix ms). */
  ts: number;
  answers: AnswerMode;
  /** Classes in each compact answer, 1..MAX_COMPACT_TOPK. */
  topk: number;
  context?: StreamContext;
}

/** The edge's answer to an announce, on `.../a`. */
export interface ContextAck {
  id: number;
  ok: boolean;
  reason?: string;
}

export interface CompactAnswer {
  frameId: number;
  classIndex: number;
  /** 0..1 in steps of 1e-4. */
  score: number;
  /** Top-k after the first class, best first (absent: not asked). */
  more?: { classIndex: number; score: number }[];
}

export class ContextError extends Error {
  override name = 'ContextError';
  constructor(message: string) {
    super(boundReason(message));
  }
}

const packr = new Packr({ useRecords: false, variableMapSize: true });
const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isUint = (v: unknown, max: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;

/** Parse and check an announce (JSON, at most 4 KiB); throws ContextError saying why. */
export function parseAnnounce(payload: Uint8Array): ContextAnnounce {
  if (payload.byteLength > 4096) throw new ContextError('announce over 4 KiB');
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString());
  } catch {
    throw new ContextError('announce is not JSON');
  }
  if (!isObj(v) || v.v !== CONTEXT_VERSION) {
    throw new ContextError(`announce is not v${CONTEXT_VERSION}`);
  }
  if (!isUint(v.id, 0xffff_ffff)) throw new ContextError('announce needs an id (uint32)');
  if (typeof v.ts !== 'number' || !Number.isFinite(v.ts) || v.ts < 0) {
    throw new ContextError('announce needs ts, the device clock in Unix ms');
  }
  if (v.answers !== 'compact' && v.answers !== 'full') {
    throw new ContextError('answers must be "compact" or "full"');
  }
  if (!isUint(v.topk, MAX_COMPACT_TOPK) || v.topk < 1) {
    throw new ContextError(`topk must be 1..${MAX_COMPACT_TOPK}`);
  }
  const a: ContextAnnounce = {
    v: CONTEXT_VERSION,
    id: v.id,
    ts: v.ts,
    answers: v.answers,
    topk: v.topk,
  };
  if (v.context !== undefined) a.context = parseStreamContext(v.context);
  return a;
}

function parseStreamContext(c: unknown): StreamContext {
  if (!isObj(c)) throw new ContextError('context must be an object');
  if (!isUint(c.ctx, 255)) throw new ContextError('context id must be 0..255');
  if (!isUint(c.frameBase, 0xffff_ffff)) throw new ContextError('frameBase must be a uint32');
  const shape = c.shape;
  if (!Array.isArray(shape) || shape.length > 6 || !shape.every((d) => isUint(d, 1 << 22))) {
    throw new ContextError('shape must be 1..6 positive integers');
  }
  const s: StreamContext = {
    ctx: c.ctx,
    modelId: c.modelId as number,
    modelVersion: c.modelVersion as number,
    codecId: c.codecId as number,
    codecVersion: c.codecVersion as number,
    point: c.point as number,
    shape: shape as number[],
    frameBase: c.frameBase,
  };
  try {
    validateFields({ ...s, frameId: s.frameBase, captureTs: 0 });
  } catch (e) {
    if (e instanceof FrameError) throw new ContextError(`context: ${e.message}`);
    throw e;
  }
  return s;
}

export function encodeAnnounce(a: ContextAnnounce): Buffer {
  return Buffer.from(JSON.stringify(a));
}

export function encodeAck(a: ContextAck): Buffer {
  return packr.pack(a.reason === undefined ? { id: a.id, ok: a.ok } : { ...a });
}

/** A compact answer; `topk`: the classes of the full result, best first. */
export function encodeCompactAnswer(a: CompactAnswer): Buffer {
  const scoreOf = (s: number) => Math.max(0, Math.min(10_000, Math.round(s * 10_000)));
  const head = [a.frameId, a.classIndex, scoreOf(a.score)];
  const more = (a.more ?? []).slice(0, MAX_COMPACT_TOPK - 1);
  return packr.pack(
    more.length ? [...head, more.flatMap((m) => [m.classIndex, scoreOf(m.score)])] : head,
  );
}

/** What arrives on `.../a`. */
export type AnswerChannelMessage =
  { kind: 'ack'; ack: ContextAck } | { kind: 'answer'; answer: CompactAnswer };

/** Parse a message of `.../a`; throws ContextError on anything else. */
export function parseAnswerChannel(payload: Uint8Array): AnswerChannelMessage {
  let v: unknown;
  try {
    v = decodeMsgpack(payload, { maxBytes: 2048, maxDepth: 2, maxItems: 64 });
  } catch (e) {
    if (e instanceof MsgpackError) throw new ContextError(`not msgpack: ${e.message}`);
    throw e;
  }
  if (isObj(v)) {
    if (!isUint(v.id, 0xffff_ffff) || typeof v.ok !== 'boolean') {
      throw new ContextError('an ack needs id and ok');
    }
    const ack: ContextAck = { id: v.id, ok: v.ok };
    if (v.reason !== undefined) {
      if (typeof v.reason !== 'string') throw new ContextError('an ack reason is text');
      ack.reason = boundReason(v.reason);
    }
    return { kind: 'ack', ack };
  }
  if (!Array.isArray(v) || (v.length !== 3 && v.length !== 4)) {
    throw new ContextError('an answer is [frameId, classIndex, score, more?]');
  }
  const [frameId, classIndex, score, more] = v as unknown[];
  if (!isUint(frameId, 0xffff_ffff) || !isUint(classIndex, 0xffff) || !isUint(score, 10_000)) {
    throw new ContextError('an answer has a uint32 frame id, a class and a score 0..10000');
  }
  const answer: CompactAnswer = { frameId, classIndex, score: score / 10_000 };
  if (more !== undefined) {
    if (!Array.isArray(more) || more.length % 2 || more.length > 2 * (MAX_COMPACT_TOPK - 1)) {
      throw new ContextError('top-k of an answer is [class, score, ...]');
    }
    answer.more = [];
    for (let i = 0; i < more.length; i += 2) {
      const c: unknown = more[i];
      const s: unknown = more[i + 1];
      if (!isUint(c, 0xffff) || !isUint(s, 10_000)) throw new ContextError('bad top-k entry');
      answer.more.push({ classIndex: c, score: s / 10_000 });
    }
  }
  return { kind: 'answer', answer };
}
