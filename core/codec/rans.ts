/**
 * The entropy coder shared by device and edge: byte-wise rANS (Duda 2013; the 32-bit
 * state, byte renormalisation variant of Giesen's public-domain ryg_rans), driven by
 * integer CDF tables that the models/ toolkit exports next to the weights. Everything on
 * the coding path is integer arithmetic below 2^31, so the bytes are identical on every
 * machine and identical to the Python reference (models/splitfleet_models/rans.py);
 * golden fixtures in test/fixtures/rans hold both to that.
 *
 * Table t covers the values offset_t .. offset_t + n_t - 1 (n_t = cdf.length - 2); its
 * last symbol (index n_t) is an escape. A value outside the range is sent as the escape
 * followed by bypass chunks (CompressAI's overflow scheme, our own layout): one 4-bit
 * chunk holding (chunks - 1), then `chunks` 4-bit chunks of the zig-zag distance, low
 * first, each with probability 1/16.
 *
 * Two stream layouts (`RansStream`, the bitstream version a learned codec's frames
 * carry); both run the encoder backwards over the symbols and emit bytes backwards:
 *
 *   1  the state starts at L = 2^23; the first four bytes are the final state, little
 *      endian. The start state is carried to the end for nothing: 3 to 4 bytes per
 *      stream above the information.
 *   2  the state starts at 1 and grows until it reaches L (the renormalisation invariant
 *      keeps it below 2^31 all along, and once a byte is out it stays in [L, 256 L)); the
 *      final state is flushed high byte first in as few bytes as hold it (3 when it is
 *      below 2^24), and the decoder reads it like any renormalisation, from 0 until the
 *      state reaches L or the stream ends, and never reads past the end. A state below a
 *      symbol's frequency codes it at the cost of its slot's start, not of its
 *      probability, so each table's slots are rotated to start at its most probable
 *      symbol (the first of equals), which then costs nothing there.
 *
 * A decoder that runs out of bytes (stream 1), meets an impossible chunk count, or does
 * not land back on the start state with every byte consumed reports a corrupt or
 * truncated stream; decoding is bounded by the symbol count, which the caller knows from
 * the frame's shape. Bypass chunks are raw bits with no redundancy, so a flipped bit there
 * can decode to another value: integrity of the bytes in transit is the transport's job
 * (TCP, TLS); this check catches structure.
 */
import { CodecError } from './types.js';

/** Probabilities are integers out of 2^PROB_BITS. */
export const PROB_BITS = 16;
const PROB_SCALE = 1 << PROB_BITS;
const PROB_MASK = PROB_SCALE - 1;
/** Lower bound of the state interval [L, 256 L). */
const RANS_L = 1 << 23;
const BYPASS_BITS = 4;
const BYPASS_FREQ = 1 << (PROB_BITS - BYPASS_BITS);
const BYPASS_MAX_CHUNKS = 8;
/** |value - offset| must stay below this (8 bypass chunks hold 32 bits). */
export const MAX_DISTANCE = 2 ** 30;

/** The stream layouts (see above); 2 is what encoders write. */
export type RansStream = 1 | 2;
export const RANS_STREAMS: readonly RansStream[] = [1, 2];
export const LATEST_RANS_STREAM: RansStream = 2;
/** The state a stream starts (encoder) and ends (decoder) at. */
const startState = (stream: RansStream) => (stream === 1 ? RANS_L : 1);

const rotations = new WeakMap<Uint32Array, number>();
/** Stream 2's slot rotation of a table: the start of its most probable symbol. */
function rotation(cdf: Uint32Array, stream: RansStream): number {
  if (stream === 1) return 0;
  let r = rotations.get(cdf);
  if (r === undefined) {
    let best = 0;
    for (let k = 1; k < cdf.length - 1; k++) {
      if (cdf[k + 1]! - cdf[k]! > cdf[best + 1]! - cdf[best]!) best = k;
    }
    r = cdf[best]!;
    rotations.set(cdf, r);
  }
  return r;
}

/** Whether `v` is a stream layout this coder reads. */
export function isRansStream(v: number): v is RansStream {
  return (RANS_STREAMS as readonly number[]).includes(v);
}

/** The bytes a stream of `bits` bits of information is expected to take: the flush on
 * top (stream 1: the 4-byte state; stream 2: one byte, its mean is ~0.6). */
export function expectedStreamBytes(bits: number, stream: RansStream = LATEST_RANS_STREAM): number {
  return Math.ceil(bits / 8) + (stream === 1 ? 4 : 1);
}

export interface CdfTable {
  /** Value coded by symbol 0. */
  readonly offset: number;
  /** Cumulative frequencies: cdf[0] = 0, strictly increasing, cdf[last] = 2^16; n_t + 2 entries. */
  readonly cdf: Uint32Array;
}

/** Checks a table as it comes from a bundle; throws with the table's index in the message. */
export function checkTable(t: CdfTable, i = 0): void {
  const { cdf, offset } = t;
  if (!Number.isSafeInteger(offset) || Math.abs(offset) > MAX_DISTANCE) {
    throw new CodecError(`cdf table ${i}: offset ${offset} is not an integer in range`);
  }
  if (cdf.length < 3 || cdf.length > PROB_SCALE + 1) {
    throw new CodecError(`cdf table ${i}: ${cdf.length} entries (need 3..${PROB_SCALE + 1})`);
  }
  if (cdf[0] !== 0 || cdf[cdf.length - 1] !== PROB_SCALE) {
    throw new CodecError(`cdf table ${i}: must run from 0 to ${PROB_SCALE}`);
  }
  for (let k = 1; k < cdf.length; k++) {
    if (cdf[k]! <= cdf[k - 1]!) {
      throw new CodecError(`cdf table ${i}: not strictly increasing at entry ${k}`);
    }
  }
}

/** Symbol runs as (start, freq) pairs, in coding order. */
class OpList {
  start = new Uint32Array(1024);
  freq = new Uint32Array(1024);
  n = 0;
  push(start: number, freq: number): void {
    if (this.n === this.start.length) {
      const s = new Uint32Array(this.n * 2);
      s.set(this.start);
      this.start = s;
      const f = new Uint32Array(this.n * 2);
      f.set(this.freq);
      this.freq = f;
    }
    this.start[this.n] = start;
    this.freq[this.n] = freq;
    this.n++;
  }
}

function pushBypass(ops: OpList, raw: number): void {
  let chunks = 1;
  while (chunks < BYPASS_MAX_CHUNKS && raw >= 2 ** (BYPASS_BITS * chunks)) chunks++;
  ops.push((chunks - 1) * BYPASS_FREQ, BYPASS_FREQ);
  for (let c = 0; c < chunks; c++) {
    const v = Math.floor(raw / 2 ** (BYPASS_BITS * c)) % (1 << BYPASS_BITS);
    ops.push(v * BYPASS_FREQ, BYPASS_FREQ);
  }
}

/**
 * Encodes values[i] with tables[tableOf[i]]. `tableOf` may be a function of i, which
 * is how a channel-wise model maps an element of a CxHxW tensor to its channel's table.
 */
export function ransEncode(
  values: ArrayLike<number>,
  tables: readonly CdfTable[],
  tableOf: (i: number) => number,
  stream: RansStream = LATEST_RANS_STREAM,
): Uint8Array {
  const ops = new OpList();
  for (let i = 0; i < values.length; i++) {
    const t = tables[tableOf(i)];
    if (!t) throw new RangeError(`no cdf table ${tableOf(i)} for element ${i}`);
    const v = values[i]!;
    if (!Number.isInteger(v)) throw new RangeError(`element ${i} is not an integer: ${v}`);
    const n = t.cdf.length - 2;
    const idx = v - t.offset;
    const rot = rotation(t.cdf, stream);
    if (idx >= 0 && idx < n) {
      ops.push((t.cdf[idx]! - rot) & PROB_MASK, t.cdf[idx + 1]! - t.cdf[idx]!);
      continue;
    }
    if (Math.abs(idx) >= MAX_DISTANCE) {
      throw new RangeError(`element ${i} = ${v} is too far from table range`);
    }
    ops.push((t.cdf[n]! - rot) & PROB_MASK, PROB_SCALE - t.cdf[n]!);
    pushBypass(ops, idx < 0 ? -2 * idx - 1 : 2 * (idx - n));
  }

  // Each op emits at most 2 bytes (state < 2^31, freq >= 1); 4 more for the final state.
  let buf = new Uint8Array(ops.n * 2 + 4);
  let ptr = buf.length;
  let x = startState(stream);
  for (let k = ops.n - 1; k >= 0; k--) {
    const freq = ops.freq[k]!;
    // x_max = ((L >> PROB_BITS) << 8) * freq = 2^15 * freq
    const xMax = (RANS_L / PROB_SCALE) * 256 * freq;
    while (x >= xMax) {
      buf[--ptr] = x & 0xff;
      x = x >>> 8;
    }
    x = Math.floor(x / freq) * PROB_SCALE + (x % freq) + ops.start[k]!;
  }
  if (stream === 1) {
    ptr -= 4;
    buf[ptr] = x & 0xff;
    buf[ptr + 1] = (x >>> 8) & 0xff;
    buf[ptr + 2] = (x >>> 16) & 0xff;
    buf[ptr + 3] = (x >>> 24) & 0xff;
  } else {
    // high byte first, as few as hold it: the decoder reads it as a renormalisation
    for (; x > 0; x = x >>> 8) buf[--ptr] = x & 0xff;
  }
  buf = buf.subarray(ptr);
  return buf.slice();
}

/** Finds s's symbol in cdf by binary search: cdf[idx] <= s < cdf[idx + 1]. */
function lookup(cdf: Uint32Array, s: number): number {
  let lo = 0;
  let hi = cdf.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (cdf[mid]! <= s) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * Decodes `count` values. Throws CodecError on a truncated or corrupt stream; runs in
 * O(count * (log table size + 9)) whatever the bytes are.
 */
export function ransDecode(
  bytes: Uint8Array,
  count: number,
  tables: readonly CdfTable[],
  tableOf: (i: number) => number,
  out: Int32Array = new Int32Array(count),
  stream: RansStream = LATEST_RANS_STREAM,
): Int32Array {
  const end = bytes.length;
  let ptr = 0;
  let x = 0;
  if (stream === 1) {
    if (end < 4) throw new CodecError(`rans stream of ${end} bytes is truncated`);
    ptr = 4;
    x = (bytes[0]! | (bytes[1]! << 8) | (bytes[2]! << 16) | (bytes[3]! << 24)) >>> 0;
    if (x < RANS_L || x >= RANS_L * 256) throw new CodecError('rans stream: bad initial state');
  } else {
    while (x < RANS_L && ptr < end) x = x * 256 + bytes[ptr++]!;
    if (x === 0 || x >= RANS_L * 256) throw new CodecError('rans stream: bad initial state');
  }
  const last = startState(stream);

  const get = (start: number, freq: number, s: number): void => {
    x = freq * Math.floor(x / PROB_SCALE) + s - start;
    while (x < RANS_L) {
      if (ptr >= end) {
        // stream 2: a state below L with every byte read is the start of the stream
        if (stream === 2) return;
        throw new CodecError('rans stream is truncated');
      }
      x = x * 256 + bytes[ptr++]!;
    }
  };
  const bypass = (): number => {
    const s = x & PROB_MASK;
    const v = Math.floor(s / BYPASS_FREQ);
    get(v * BYPASS_FREQ, BYPASS_FREQ, s);
    return v;
  };

  for (let i = 0; i < count; i++) {
    const t = tables[tableOf(i)];
    if (!t) throw new RangeError(`no cdf table ${tableOf(i)} for element ${i}`);
    const { cdf } = t;
    const n = cdf.length - 2;
    const s = ((x & PROB_MASK) + rotation(cdf, stream)) & PROB_MASK;
    const idx = lookup(cdf, s);
    get(cdf[idx]!, cdf[idx + 1]! - cdf[idx]!, s);
    if (idx < n) {
      out[i] = t.offset + idx;
      continue;
    }
    const chunks = bypass() + 1;
    if (chunks > BYPASS_MAX_CHUNKS) throw new CodecError('rans stream is corrupt (bypass length)');
    let raw = 0;
    for (let c = 0; c < chunks; c++) raw += bypass() * 2 ** (BYPASS_BITS * c);
    const dist = raw % 2 === 1 ? -(raw + 1) / 2 : raw / 2 + n;
    if (Math.abs(dist) >= MAX_DISTANCE)
      throw new CodecError('rans stream is corrupt (bypass value)');
    const v = t.offset + dist;
    if (v < -(2 ** 31) || v >= 2 ** 31)
      throw new CodecError('rans stream is corrupt (bypass value)');
    out[i] = v;
  }
  if (x !== last || ptr !== end) {
    throw new CodecError(
      ptr !== end
        ? `rans stream is corrupt: ${end - ptr} bytes left over`
        : 'rans stream is corrupt: final state check failed',
    );
  }
  return out;
}
