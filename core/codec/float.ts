/**
 * Uncompressed split-tensor baselines: float32 and float16, little-endian.
 */
import { getFloat16, setFloat16 } from '@petamoriken/float16';
import { numel, type Tensor } from '../tensor.js';
import { FEATURE_CODEC_IDS } from './ids.js';
import { checkPoint, CodecError, type FeatureCodec } from './types.js';

function floatCodec(
  id: number,
  name: string,
  width: number,
  write: (dv: DataView, at: number, v: number) => void,
  read: (dv: DataView, at: number) => number,
): FeatureCodec {
  const label = name.replace('split-', '');
  return {
    kind: 'feature',
    id,
    name,
    version: 1,
    points: [{ index: 0, label, method: name }],
    encode(t, point) {
      checkPoint(this, point);
      if (!t.data.every(Number.isFinite))
        throw new CodecError(`${name}: tensor holds a non-finite value`);
      const out = new Uint8Array(t.data.length * width);
      const dv = new DataView(out.buffer);
      for (let i = 0; i < t.data.length; i++) write(dv, i * width, t.data[i]!);
      return out;
    },
    decode(payload, shape, point): Tensor {
      checkPoint(this, point);
      const n = numel(shape);
      if (payload.byteLength !== n * width) {
        throw new CodecError(
          `${name}: ${payload.byteLength} B for ${n} values (want ${n * width})`,
        );
      }
      const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
      const data = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        const v = read(dv, i * width);
        if (!Number.isFinite(v)) throw new CodecError(`${name}: non-finite value at ${i}`);
        data[i] = v;
      }
      return { data, shape: [...shape] };
    },
  };
}

export const splitFp32 = floatCodec(
  FEATURE_CODEC_IDS['split-fp32'],
  'split-fp32',
  4,
  (dv, at, v) => dv.setFloat32(at, v, true),
  (dv, at) => dv.getFloat32(at, true),
);

export const splitFp16 = floatCodec(
  FEATURE_CODEC_IDS['split-fp16'],
  'split-fp16',
  2,
  (dv, at, v) => setFloat16(dv, at, v, true),
  (dv, at) => getFloat16(dv, at, true),
);
