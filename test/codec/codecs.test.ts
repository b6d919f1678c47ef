import test from 'ava';
import { PINNED_CODECS } from '../../core/codec/ids.js';
import * as registry from '../../core/codec/registry.js';
import {
  allCodecs,
  codecById,
  codecByName,
  imageCodecByName,
  listCodecs,
  lookupCodec,
} from '../../core/codec/registry.js';
import { CodecError } from '../../core/codec/types.js';
import type { Tensor } from '../../core/tensor.js';

/** A split tensor like the real one: non-negative, sparse-ish, with a long tail. */
function features(seed = 1): Tensor {
  let s = seed;
  const rnd = () => (s = (s * 1_103_515_245 + 12_345) & 0x7fffffff) / 0x7fffffff;
  const data = new Float32Array(64 * 16 * 16);
  for (let i = 0; i < data.length; i++) data[i] = rnd() < 0.4 ? 0 : -Math.log(rnd() + 1e-6) * 0.8;
  return { data, shape: [64, 16, 16] };
}

function maxAbs(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

test('ids are pinned, not registration order', (t) => {
  t.deepEqual(
    listCodecs().map((c) => [c.id, c.name]),
    [
      [1, 'split-fp32'],
      [2, 'split-fp16'],
      [3, 'split-q'],
    ],
  );
  t.is(codecById(3), codecByName('split-q'));
  t.throws(() => codecById(99), { instanceOf: CodecError, message: /unknown codec id 99/ });
  t.throws(() => codecByName('nope'), { instanceOf: CodecError });
});

test('the registry holds every pinned id, frozen: no codec can be added or changed', (t) => {
  t.deepEqual(
    PINNED_CODECS.map((c) => [c.id, c.name, c.kind]),
    [
      [1, 'split-fp32', 'feature'],
      [2, 'split-fp16', 'feature'],
      [3, 'split-q', 'feature'],
      [4, 'bottlenetpp', 'learned'],
      [5, 'aecnn', 'learned'],
      [6, 'frankensplit', 'learned'],
      [7, 'splitfleet', 'learned'],
      [16, 'jpeg', 'image'],
      [17, 'jpeg-scan', 'image'],
      [18, 'webp', 'image'],
      [19, 'png', 'image'],
    ],
  );
  // every pinned id but the learned ones (their bundles bring them) is in the registry
  t.deepEqual(
    allCodecs().map((c) => [c.id, c.name, c.kind]),
    PINNED_CODECS.filter((c) => c.kind !== 'learned').map((c) => [c.id, c.name, c.kind]),
  );
  for (const c of PINNED_CODECS) {
    if (c.kind === 'learned') {
      t.throws(() => lookupCodec(c.id), {
        instanceOf: CodecError,
        message: /with its model bundle/,
      });
    } else {
      t.is(lookupCodec(c.id), lookupCodec(c.name));
      t.is(lookupCodec(c.id).id, c.id);
    }
  }
  t.is(imageCodecByName('jpeg')?.id, 16);
  t.is(imageCodecByName('split-q'), undefined);
  t.throws(() => codecById(16), { instanceOf: CodecError, message: /image codec/ });
  t.false('registerCodec' in registry);
  const c = lookupCodec(3);
  t.true(Object.isFrozen(c) && Object.isFrozen(c.points) && Object.isFrozen(PINNED_CODECS));
  t.throws(() => Object.assign(c, { name: 'other' }), { instanceOf: TypeError });
  t.is(codecById(3).name, 'split-q');
});

test('split-fp32 is exact', (t) => {
  const x = features();
  const c = codecByName('split-fp32');
  const y = c.decode(c.encode(x, 0), x.shape, 0);
  t.deepEqual(y.data, x.data);
  t.is(c.encode(x, 0).byteLength, x.data.length * 4);
});

test('split-fp16 is within half-precision rounding', (t) => {
  const x = features(2);
  const c = codecByName('split-fp16');
  const bytes = c.encode(x, 0);
  t.is(bytes.byteLength, x.data.length * 2);
  const y = c.decode(bytes, x.shape, 0);
  for (let i = 0; i < x.data.length; i++) {
    t.true(Math.abs(y.data[i]! - x.data[i]!) <= Math.abs(x.data[i]!) * 2 ** -11 + 1e-7);
  }
});

test('split-q reconstructs within half a quantization step at every point', (t) => {
  const x = features(3);
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of x.data) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  const c = codecByName('split-q');
  let last = Infinity;
  for (const p of c.points) {
    const bits = Number(p.label.replace('bit', ''));
    const bytes = c.encode(x, p.index);
    const y = c.decode(bytes, x.shape, p.index);
    const step = (hi - lo) / (2 ** bits - 1);
    t.true(
      maxAbs(x.data, y.data) <= step / 2 + 1e-5,
      `${p.label}: ${maxAbs(x.data, y.data)} > ${step / 2}`,
    );
    t.true(bytes.byteLength < last, 'fewer bits, fewer bytes');
    last = bytes.byteLength;
  }
});

test('split-q handles a constant tensor', (t) => {
  const x = { data: new Float32Array(100).fill(0.25), shape: [100] };
  const c = codecByName('split-q');
  t.deepEqual(c.decode(c.encode(x, 0), x.shape, 0).data, x.data);
});

test('corrupt or mismatched payloads raise CodecError, never a crash', (t) => {
  const x = features(4);
  for (const c of listCodecs()) {
    for (const p of c.points) {
      const good = c.encode(x, p.index);
      t.throws(() => c.decode(good.subarray(0, good.byteLength - 1), x.shape, p.index), {
        instanceOf: CodecError,
      });
      t.throws(() => c.decode(good, [64, 16, 15], p.index), { instanceOf: CodecError });
      t.throws(() => c.decode(good, x.shape, 200), { instanceOf: CodecError });
    }
  }
  const q = codecByName('split-q');
  const bytes = q.encode(x, 0);
  const garbage = Uint8Array.from(bytes);
  for (let i = 8; i < garbage.length; i++) garbage[i] = (i * 31) & 0xff;
  t.throws(() => q.decode(garbage, x.shape, 0), { instanceOf: CodecError });
  // A zip bomb: a tiny payload that inflates past the tensor size stops at the cap.
  const bomb = q.encode({ data: new Float32Array(1 << 20), shape: [1 << 20] }, 0);
  t.throws(() => q.decode(bomb, [16], 0), { instanceOf: CodecError });
});

test('non-finite values are refused on both sides', (t) => {
  const nan = { data: Float32Array.of(1, NaN, 2), shape: [3] };
  for (const c of listCodecs())
    t.throws(() => c.encode(nan, 0), { instanceOf: CodecError }, c.name);
  const fp32 = codecByName('split-fp32');
  const bytes = new Uint8Array(12);
  new DataView(bytes.buffer).setFloat32(4, Infinity, true);
  t.throws(() => fp32.decode(bytes, [3], 0), { instanceOf: CodecError, message: /non-finite/ });
});
