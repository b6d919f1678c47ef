/**
 * msgpack from the network: plain msgpack only, with bounded work.
 *
 * Before any value is built, one linear pass over the bytes checks that they hold exactly
 * one well-formed msgpack value, nested at most `maxDepth` deep, with at most `maxItems`
 * elements in all, map keys that are strings, and no extension of any type. Extensions
 * are where msgpack libraries keep their stateful features (msgpackr: records, bundled
 * strings, shared references and structured clones, sets, errors, regular expressions,
 * typed arrays, dates, big integers), none of which splitfleet's messages use, and some
 * of which let a few hundred bytes cost time or memory exponential in their nesting.
 * Only then are the bytes handed to msgpackr, with those features switched off.
 *
 * Errors are MsgpackError with a short reason (at most MAX_REASON_CHARS) that names what
 * was found and where, never the data itself.
 */
import { Unpackr } from 'msgpackr';
import { boundReason } from './messages.js';

export class MsgpackError extends Error {
  override name = 'MsgpackError';
  constructor(message: string) {
    super(boundReason(message));
  }
}

export interface MsgpackLimits {
  /** Largest input (bytes). */
  maxBytes: number;
  /** Deepest nesting of arrays and maps (the top-level value's own array is depth 1). */
  maxDepth: number;
  /** Most elements in all: every value in an array, every key and value in a map. */
  maxItems: number;
}

export const DEFAULT_MSGPACK_LIMITS: Readonly<MsgpackLimits> = {
  maxBytes: 2 * 1024 * 1024,
  maxDepth: 16,
  maxItems: 4096,
};

/** Fixed-size values by first byte (0xc0..0xdf); 0: not a fixed-size scalar. */
const FIXED: Partial<Record<number, number>> = {
  0xc0: 1, // nil
  0xc2: 1, // false
  0xc3: 1, // true
  0xca: 5, // float 32
  0xcb: 9, // float 64
  0xcc: 2, // uint 8
  0xcd: 3, // uint 16
  0xce: 5, // uint 32
  0xcf: 9, // uint 64
  0xd0: 2, // int 8
  0xd1: 3, // int 16
  0xd2: 5, // int 32
  0xd3: 9, // int 64
};

/** fixext 1/2/4/8/16: data size by first byte. */
const FIXEXT: Partial<Record<number, number>> = { 0xd4: 1, 0xd5: 2, 0xd6: 4, 0xd7: 8, 0xd8: 16 };

const hex = (b: number) => `0x${b.toString(16).padStart(2, '0')}`;

/**
 * Check that `b` is exactly one plain msgpack value within `limits`; throws MsgpackError
 * saying what is wrong. Linear in `b.byteLength`, allocation-free but for the stack of
 * open containers (at most `maxDepth`).
 */
export function checkMsgpack(b: Uint8Array, limits: Partial<MsgpackLimits> = {}): void {
  const { maxBytes, maxDepth, maxItems } = { ...DEFAULT_MSGPACK_LIMITS, ...limits };
  const end = b.byteLength;
  if (end === 0) throw new MsgpackError('empty msgpack input');
  if (end > maxBytes) throw new MsgpackError(`msgpack input of ${end} B exceeds ${maxBytes} B`);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  /** Per open container: values still to read, and whether it is a map (then even = key). */
  const left: number[] = [];
  const isMap: boolean[] = [];
  let items = 0;
  let at = 0;

  const need = (n: number, what: string) => {
    if (at + n > end) {
      throw new MsgpackError(`msgpack ${what} at byte ${at} runs past the end (${end} B)`);
    }
  };
  const open = (count: number, map: boolean, start: number) => {
    const values = map ? count * 2 : count;
    if (values > end - at) {
      throw new MsgpackError(
        `msgpack ${map ? 'map' : 'array'} at byte ${start} declares ${count} elements, more than the ${end - at} bytes left`,
      );
    }
    if (values === 0) return;
    if (left.length >= maxDepth) {
      throw new MsgpackError(
        `msgpack value at byte ${start} is nested too deep (over ${maxDepth})`,
      );
    }
    left.push(values);
    isMap.push(map);
  };

  do {
    // a map key must be a string
    const depth = left.length;
    const keyExpected = depth > 0 && isMap[depth - 1]! && left[depth - 1]! % 2 === 0;
    if (depth > 0) left[depth - 1]!--;
    if (++items > maxItems) {
      throw new MsgpackError(`msgpack input holds more than ${maxItems} elements`);
    }
    need(1, 'value');
    const start = at;
    const t = b[at++]!;
    const isString = (t >= 0xa0 && t <= 0xbf) || (t >= 0xd9 && t <= 0xdb);
    if (keyExpected && !isString) {
      throw new MsgpackError(`msgpack map key at byte ${start} is not a string (${hex(t)})`);
    }
    if (t <= 0x7f || t >= 0xe0) {
      // positive or negative fixint
    } else if (t <= 0x8f) {
      open(t & 0x0f, true, start);
    } else if (t <= 0x9f) {
      open(t & 0x0f, false, start);
    } else if (t <= 0xbf) {
      need(t & 0x1f, 'string');
      at += t & 0x1f;
    } else if (FIXED[t] !== undefined) {
      need(FIXED[t] - 1, 'number');
      at += FIXED[t] - 1;
    } else if (t === 0xc4 || t === 0xc5 || t === 0xc6 || (t >= 0xd9 && t <= 0xdb)) {
      const w = t === 0xc4 || t === 0xd9 ? 1 : t === 0xc5 || t === 0xda ? 2 : 4;
      const what = t <= 0xc6 ? 'bin' : 'string';
      need(w, what);
      const n = w === 1 ? b[at]! : w === 2 ? dv.getUint16(at) : dv.getUint32(at);
      at += w;
      need(n, what);
      at += n;
    } else if (t >= 0xdc) {
      // array 16/32, map 16/32
      const w = t === 0xdc || t === 0xde ? 2 : 4;
      need(w, 'length');
      const n = w === 2 ? dv.getUint16(at) : dv.getUint32(at);
      at += w;
      open(n, t >= 0xde, start);
    } else if (FIXEXT[t] !== undefined || (t >= 0xc7 && t <= 0xc9)) {
      const w = t === 0xc7 ? 1 : t === 0xc8 ? 2 : t === 0xc9 ? 4 : 0;
      need(w + 1, 'extension');
      const type = dv.getInt8(at + w);
      throw new MsgpackError(`msgpack extension type ${type} at byte ${start} is not accepted`);
    } else {
      throw new MsgpackError(`msgpack byte ${hex(t)} at byte ${start} is reserved`);
    }
    while (left.length > 0 && left[left.length - 1] === 0) {
      left.pop();
      isMap.pop();
    }
  } while (left.length > 0);
  if (at !== end) {
    throw new MsgpackError(`${end - at} bytes follow the msgpack value (at byte ${at})`);
  }
}

// Plain msgpack: no records, no structured clone, no bundled strings, no extra types. The
// pre-scan refuses every extension, so none of msgpackr's extension readers ever run.
const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  structuredClone: false,
  bundleStrings: false,
  moreTypes: false,
});

/**
 * Decode one msgpack value from untrusted bytes (see the module comment); throws
 * MsgpackError. `bytes` may be a view into a larger buffer: only its window is read.
 * Bin values come back as views into `bytes`.
 */
export function decodeMsgpack(bytes: Uint8Array, limits: Partial<MsgpackLimits> = {}): unknown {
  checkMsgpack(bytes, limits);
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  try {
    return unpackr.unpack(view);
  } catch (e) {
    throw new MsgpackError(`msgpack: ${e instanceof Error ? e.message : 'unreadable'}`);
  }
}

/** A short description of a decoded value for an error reason: its type and size, and
 * its value only when that is a short scalar. */
export function describeValue(v: unknown): string {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'number' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  if (typeof v === 'bigint') {
    const s = v.toString();
    return s.length <= 24 ? `integer ${s}` : `integer of ${s.length} digits`;
  }
  if (typeof v === 'string') return `string of ${v.length} chars`;
  if (v instanceof Uint8Array) return `bin of ${v.byteLength} bytes`;
  if (Array.isArray(v)) return `array of ${v.length} items`;
  if (typeof v === 'object') return `map of ${Object.keys(v).length} keys`;
  return typeof v;
}
