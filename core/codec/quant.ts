/**
 * Uniform scalar quantization of the split tensor followed by a lossless stage.
 *
 * Payload (version 1): [min f32 LE][max f32 LE][deflate-raw(symbols)] where each symbol
 * is one byte in 0..2^bits-1, q = round((x - min) / (max - min) * (2^bits - 1)).
 * One byte per symbol even below 8 bits: the lossless stage (zlib's deflate, level 9)
 * removes the unused bits better than bit packing would let it.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { numel, type Tensor } from '../tensor.js';
import { FEATURE_CODEC_IDS } from './ids.js';
import { checkPoint, CodecError, type FeatureCodec } from './types.js';

const BITS: Record<number, number> = { 0: 8, 1: 6, 2: 4, 3: 2 };
const HEADER = 8;

function bitsOf(point: number): number {
  const b = BITS[point];
  if (b === undefined) throw new CodecError(`split-q: no operating point ${point}`);
  return b;
}

export const splitQuant: FeatureCodec = {
  kind: 'feature',
  id: FEATURE_CODEC_IDS['split-q'],
  name: 'split-q',
  version: 1,
  points: Object.entries(BITS).map(([i, b]) => ({
    index: Number(i),
    label: `${b}bit`,
    method: `split-q${b}`,
  })),
  encode(t, point) {
    checkPoint(this, point);
    const levels = (1 << bitsOf(point)) - 1;
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of t.data) {
      if (!Number.isFinite(v)) throw new CodecError('split-q: tensor holds a non-finite value');
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (t.data.length === 0) lo = hi = 0;
    // The stored bounds are float32: quantize against exactly what the decoder will read.
    lo = Math.fround(lo);
    hi = Math.fround(hi);
    const scale = hi > lo ? levels / (hi - lo) : 0;
    const sym = new Uint8Array(t.data.length);
    for (let i = 0; i < sym.length; i++) {
      sym[i] = Math.min(levels, Math.max(0, Math.round((t.data[i]! - lo) * scale)));
    }
    const body = deflateRawSync(sym, { level: 9 });
    const out = new Uint8Array(HEADER + body.byteLength);
    const dv = new DataView(out.buffer);
    dv.setFloat32(0, lo, true);
    dv.setFloat32(4, hi, true);
    out.set(body, HEADER);
    return out;
  },
  decode(payload, shape, point): Tensor {
    checkPoint(this, point);
    const levels = (1 << bitsOf(point)) - 1;
    const n = numel(shape);
    if (payload.byteLength < HEADER)
      throw new CodecError('split-q: payload shorter than its header');
    const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    const lo = dv.getFloat32(0, true);
    const hi = dv.getFloat32(4, true);
    if (!Number.isFinite(lo) || !Number.isFinite(hi) || hi < lo) {
      throw new CodecError('split-q: bad range in header');
    }
    let sym: Buffer;
    try {
      // maxOutputLength bounds the work a hostile payload can cause.
      sym = inflateRawSync(payload.subarray(HEADER), { maxOutputLength: n + 1 });
    } catch (e) {
      throw new CodecError(`split-q: corrupt lossless stage: ${(e as Error).message}`);
    }
    if (sym.byteLength !== n) {
      throw new CodecError(`split-q: ${sym.byteLength} symbols for ${n} values`);
    }
    const step = levels > 0 ? (hi - lo) / levels : 0;
    if (!Number.isFinite(step)) throw new CodecError('split-q: range overflows');
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const q = sym[i]!;
      if (q > levels) throw new CodecError(`split-q: symbol ${q} above ${levels}`);
      data[i] = lo + q * step;
    }
    return { data, shape: [...shape] };
  },
};
