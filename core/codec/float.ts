/**
 * Uncompressed split-tensor baselines: float32 and float16, little-endian.
 */
import { getFloat16, setFloat16 } from '@petamoriken/float16';
import { numel, type Tensor } from '../tensor.js';
import { checkPoint, CodecError, type FeatureCodec } from './types.js';

export const splitFp32: FeatureCodec = {
  id: 1,
  name: 'split-fp32',
  version: 1,
  points: [{ index: 0, label: 'fp32', method: 'split-fp32' }],
  encode(t, point) {
    checkPoint(this, point);
    const out = new Uint8Array(t.data.length * 4);
    const dv = new DataView(out.buffer);
    for (let i = 0; i < t.data.length; i++) dv.setFloat32(i * 4, t.data[i]!, true);
    return out;
  },
  decode(payload, shape, point): Tensor {
    checkPoint(this, point);
    const n = numel(shape);
    if (payload.byteLength !== n * 4) {
      throw new CodecError(`split-fp32: ${payload.byteLength} B for ${n} values (want ${n * 4})`);
    }
    const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = dv.getFloat32(i * 4, true);
    return { data, shape: [...shape] };
  },
};

export const splitFp16: FeatureCodec = {
  id: 2,
  name: 'split-fp16',
  version: 1,
  points: [{ index: 0, label: 'fp16', method: 'split-fp16' }],
  encode(t, point) {
    checkPoint(this, point);
    const out = new Uint8Array(t.data.length * 2);
    const dv = new DataView(out.buffer);
    for (let i = 0; i < t.data.length; i++) setFloat16(dv, i * 2, t.data[i]!, true);
    return out;
  },
  decode(payload, shape, point): Tensor {
    checkPoint(this, point);
    const n = numel(shape);
    if (payload.byteLength !== n * 2) {
      throw new CodecError(`split-fp16: ${payload.byteLength} B for ${n} values (want ${n * 2})`);
    }
    const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = getFloat16(dv, i * 2, true);
    return { data, shape: [...shape] };
  },
};
