/**
 * Feature frames, wire format v2: the lean frame of a steady stream.
 *
 * What every frame of a stream repeats in v1 (model, codec, point, shape) is said once, in
 * a session context the device announces (context.ts) and the edge acknowledges; a v2
 * frame names the context by a one-byte id and carries only what changes per frame. It is
 * plain bytes, not msgpack (a msgpack header would cost more than the fields):
 *
 *   single frame   [0x20|T] [ctx] [seq16] [ts16] ([tagLen] [tag]) [payload ...]
 *   batch          [0x22]   [ctx] [n] then n times: [seq16] [ts16] [len varint] [payload]
 *
 * - first byte    0x2_ marks v2 (a v1 frame is a msgpack array: 0x9a / 0x9b); its low bits
 *                 are flags: 0x01 a tag follows (single frames only), 0x02 a batch; 0x0c
 *                 must be 0
 * - ctx           the context id, 0..255, announced by this device on this connection
 * - seq16         uint16 big-endian: frameId - the context's frameBase (mod 2^32); the
 *                 frame id is frameBase + seq16, exactly
 * - ts16          uint16 big-endian: the low 16 bits of the capture time in Unix ms; the
 *                 receiver takes the time nearest to its estimate of the device's clock
 *                 (its own clock less the offset seen when the context was announced),
 *                 exact for frames sent within 32 s of their capture
 * - tag           as v1's: 1..128 printable characters, after a one-byte length
 * - payload       the codec's bytes: the rest of the packet (a single frame), or `len`
 *                 bytes (each frame of a batch; len is an unsigned LEB128 varint)
 * - n             frames in the batch, 1..255; all of one context
 *
 * The header of a single untagged frame is 6 bytes. A sender uses v2 only for a frame
 * whose id is within 65,535 of its context's base and whose capture is at most
 * V2_MAX_AGE_MS old; any other frame goes as v1, which every edge keeps accepting.
 */
import { FrameError, MAX_FRAME_BYTES, unwrapTime, type Frame } from './frame.js';

export const V2_MARK = 0x20;
const FLAG_TAG = 0x01;
const FLAG_BATCH = 0x02;
const FLAG_RESERVED = 0x0c;
/** Bytes before the payload of a single untagged v2 frame. */
export const V2_HEADER_BYTES = 6;
/** Largest frame id distance from the context's base a v2 frame can say. */
export const V2_MAX_SEQ = 0xffff;
/** Oldest capture a sender puts in a v2 frame (the receiver unwraps ts16 within 32 s). */
export const V2_MAX_AGE_MS = 16_000;
export const V2_MAX_BATCH = 255;
const TAG_RE = /^[\x20-\x7e]{1,128}$/;

/** One frame of a v2 packet, before its context gives it its model, codec and ids. */
export interface V2Entry {
  seq: number;
  ts16: number;
  payload: Uint8Array;
  tag?: string;
}

/** A decoded v2 packet: one context, one or more frames. */
export interface V2Packet {
  ctx: number;
  entries: V2Entry[];
}

/** What a context fixes for each of its frames (context.ts announces it). */
export interface StreamContext {
  ctx: number;
  modelId: number;
  modelVersion: number;
  codecId: number;
  codecVersion: number;
  point: number;
  shape: number[];
  /** Frame id of seq 0. */
  frameBase: number;
}

/** Whether a packet is a v2 frame (else: v1, or not a frame). */
export function isV2(bytes: Uint8Array): boolean {
  return bytes.byteLength > 0 && (bytes[0]! & 0xf0) === V2_MARK;
}

/** seq16 of a frame id in a context, or null when it is out of v2's reach. */
export function seqOf(frameId: number, frameBase: number): number | null {
  const d = (frameId - frameBase) >>> 0;
  return d <= V2_MAX_SEQ ? d : null;
}

/** The full time nearest to `estimateMs` whose low 16 bits are `low`. */
export const unwrapTs16 = (low: number, estimateMs: number): number =>
  unwrapTime(low, estimateMs, 0x1_0000);

function checkEntry(e: V2Entry): void {
  if (!Number.isInteger(e.seq) || e.seq < 0 || e.seq > V2_MAX_SEQ) {
    throw new FrameError(`v2 seq must be a uint16, got ${e.seq}`);
  }
  if (!Number.isInteger(e.ts16) || e.ts16 < 0 || e.ts16 > 0xffff) {
    throw new FrameError(`v2 ts16 must be a uint16, got ${e.ts16}`);
  }
  if (e.tag !== undefined && !TAG_RE.test(e.tag)) {
    throw new FrameError('tag must be 1..128 printable ASCII characters');
  }
}

function checkCtx(ctx: number): void {
  if (!Number.isInteger(ctx) || ctx < 0 || ctx > 255) {
    throw new FrameError(`v2 context id must be a uint8, got ${ctx}`);
  }
}

/** A single v2 frame. */
export function encodeV2(ctx: number, e: V2Entry): Uint8Array {
  checkCtx(ctx);
  checkEntry(e);
  const tag = e.tag === undefined ? null : Buffer.from(e.tag, 'latin1');
  const head = V2_HEADER_BYTES + (tag ? 1 + tag.length : 0);
  const out = new Uint8Array(head + e.payload.byteLength);
  out[0] = V2_MARK | (tag ? FLAG_TAG : 0);
  out[1] = ctx;
  out[2] = e.seq >> 8;
  out[3] = e.seq & 0xff;
  out[4] = e.ts16 >> 8;
  out[5] = e.ts16 & 0xff;
  if (tag) {
    out[6] = tag.length;
    out.set(tag, 7);
  }
  out.set(e.payload, head);
  if (out.byteLength > MAX_FRAME_BYTES) {
    throw new FrameError(`frame of ${out.byteLength} B exceeds ${MAX_FRAME_BYTES} B`);
  }
  return out;
}

function varintBytes(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/** Several frames of one context in one packet (untagged: a tag goes in a single frame). */
export function encodeV2Batch(ctx: number, entries: readonly V2Entry[]): Uint8Array {
  checkCtx(ctx);
  if (entries.length < 1 || entries.length > V2_MAX_BATCH) {
    throw new FrameError(`a v2 batch holds 1..${V2_MAX_BATCH} frames, got ${entries.length}`);
  }
  const parts: Uint8Array[] = [Uint8Array.of(V2_MARK | FLAG_BATCH, ctx, entries.length)];
  for (const e of entries) {
    checkEntry(e);
    if (e.tag !== undefined) throw new FrameError('a tagged frame goes alone, not in a batch');
    const len = varintBytes(e.payload.byteLength);
    parts.push(Uint8Array.of(e.seq >> 8, e.seq & 0xff, e.ts16 >> 8, e.ts16 & 0xff, ...len));
    parts.push(e.payload);
  }
  const out = Buffer.concat(parts);
  if (out.byteLength > MAX_FRAME_BYTES) {
    throw new FrameError(`batch of ${out.byteLength} B exceeds ${MAX_FRAME_BYTES} B`);
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Bytes of a single v2 frame of this payload (and tag). */
export function v2FrameBytes(payloadBytes: number, tag?: string): number {
  return V2_HEADER_BYTES + (tag === undefined ? 0 : 1 + tag.length) + payloadBytes;
}

/** Bytes a batch adds around its payloads (for a sender's size bound). */
export function batchOverhead(payloadBytes: readonly number[]): number {
  return 3 + payloadBytes.reduce((s, n) => s + 4 + varintBytes(n).length, 0);
}

/**
 * Decode a v2 packet from the wire: bounded by its own length (and `maxBytes`), every
 * field checked; payloads are views into `bytes`.
 */
export function decodeV2(bytes: Uint8Array, maxBytes: number = MAX_FRAME_BYTES): V2Packet {
  const n = bytes.byteLength;
  if (n > maxBytes) throw new FrameError(`frame of ${n} B exceeds ${maxBytes} B`);
  if (!isV2(bytes)) throw new FrameError('not a v2 frame');
  const flags = bytes[0]! & 0x0f;
  if (flags & FLAG_RESERVED) throw new FrameError(`v2 flags 0x${flags.toString(16)} unknown`);
  if (n < 3) throw new FrameError(`v2 frame of ${n} B is shorter than its header`);
  const ctx = bytes[1]!;
  const u16 = (at: number) => (bytes[at]! << 8) | bytes[at + 1]!;
  if (!(flags & FLAG_BATCH)) {
    if (n < V2_HEADER_BYTES) throw new FrameError(`v2 frame of ${n} B is shorter than its header`);
    let at = V2_HEADER_BYTES;
    let tag: string | undefined;
    if (flags & FLAG_TAG) {
      const len = at < n ? bytes[at]! : 0;
      if (at + 1 + len > n) throw new FrameError('v2 tag runs past the frame');
      tag = Buffer.from(bytes.subarray(at + 1, at + 1 + len)).toString('latin1');
      if (!TAG_RE.test(tag)) throw new FrameError('tag must be 1..128 printable ASCII characters');
      at += 1 + len;
    }
    const entry: V2Entry = { seq: u16(2), ts16: u16(4), payload: bytes.subarray(at) };
    if (tag !== undefined) entry.tag = tag;
    return { ctx, entries: [entry] };
  }
  if (flags & FLAG_TAG) throw new FrameError('a v2 batch carries no tags');
  const count = bytes[2]!;
  if (count < 1) throw new FrameError('a v2 batch of no frames');
  const entries: V2Entry[] = [];
  let at = 3;
  for (let i = 0; i < count; i++) {
    if (at + 5 > n) throw new FrameError(`v2 batch ends in frame ${i} of ${count}`);
    const seq = u16(at);
    const ts16 = u16(at + 2);
    at += 4;
    let len = 0;
    let mul = 1;
    for (let k = 0; ; k++) {
      if (k >= 4 || at >= n) throw new FrameError(`v2 batch: bad length of frame ${i}`);
      const b = bytes[at++]!;
      len += (b & 0x7f) * mul;
      mul *= 128;
      if (!(b & 0x80)) break;
    }
    if (at + len > n) throw new FrameError(`v2 batch: frame ${i} runs past the packet`);
    entries.push({ seq, ts16, payload: bytes.subarray(at, at + len) });
    at += len;
  }
  if (at !== n) throw new FrameError(`v2 batch: ${n - at} B after its last frame`);
  return { ctx, entries };
}

/** The full frame of a v2 entry in its context; `deviceNowMs`: the receiver's estimate
 * of the device's clock. */
export function frameOf(c: StreamContext, e: V2Entry, deviceNowMs: number): Frame {
  const f: Frame = {
    frameId: (c.frameBase + e.seq) >>> 0,
    modelId: c.modelId,
    modelVersion: c.modelVersion,
    codecId: c.codecId,
    codecVersion: c.codecVersion,
    point: c.point,
    shape: c.shape,
    captureTs: unwrapTs16(e.ts16, deviceNowMs),
    payload: e.payload,
  };
  if (e.tag !== undefined) f.tag = e.tag;
  return f;
}

/** The v2 entry of a frame in a context, or null when v2 cannot carry it (its id is out
 * of reach of the base, or it was captured too long before `nowMs`). */
export function entryOf(c: StreamContext, f: Frame, nowMs: number): V2Entry | null {
  const seq = seqOf(f.frameId, c.frameBase);
  if (seq === null || nowMs - f.captureTs > V2_MAX_AGE_MS || f.captureTs > nowMs + 1000) {
    return null;
  }
  const e: V2Entry = { seq, ts16: Math.floor(f.captureTs) & 0xffff, payload: f.payload };
  if (f.tag !== undefined) e.tag = f.tag;
  return e;
}

/** Whether a frame has the fields a context fixes. */
export function inContext(c: Omit<StreamContext, 'ctx' | 'frameBase'>, f: Frame): boolean {
  return (
    c.modelId === f.modelId &&
    c.modelVersion === f.modelVersion &&
    c.codecId === f.codecId &&
    c.codecVersion === f.codecVersion &&
    c.point === f.point &&
    c.shape.length === f.shape.length &&
    c.shape.every((d, i) => d === f.shape[i])
  );
}
