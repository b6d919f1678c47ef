import { readFileSync } from 'node:fs';
import test from 'ava';
import {
  encodeAck,
  encodeCompactAnswer,
  MAX_COMPACT_ANSWER_BYTES,
  parseAnnounce,
  parseAnswerChannel,
} from '../../core/wire/context.js';
import {
  batchOverhead,
  decodeV2,
  encodeV2,
  encodeV2Batch,
  entryOf,
  frameOf,
  isV2,
  unwrapTs16,
  V2_HEADER_BYTES,
  V2_MAX_AGE_MS,
  type StreamContext,
} from '../../core/wire/frame-v2.js';
import { decodeFrame, FrameError, type Frame } from '../../core/wire/frame.js';
import { resolveBundle } from '../../core/model/bundle.js';
import { framedBytes, splitPlan } from '../../core/split/plan.js';

const fixture = (name: string) =>
  new Uint8Array(readFileSync(new URL(`../fixtures/wire-v2/${name}`, import.meta.url)));
const pay = (n: number, s: number) => Uint8Array.from({ length: n }, (_, i) => (i * 37 + s) & 255);

const ctx: StreamContext = {
  ctx: 3,
  modelId: 1,
  modelVersion: 2,
  codecId: 20,
  codecVersion: 1,
  point: 3,
  shape: [8, 4, 4],
  frameBase: 0x1234_0000,
};

test('golden: a single v2 frame decodes to its fields, 6 header bytes', (t) => {
  const b = fixture('single.bin');
  t.true(isV2(b));
  const p = decodeV2(b);
  t.is(p.ctx, 3);
  t.is(p.entries.length, 1);
  const e = p.entries[0]!;
  t.is(e.seq, 0x0102);
  t.is(e.ts16, 0xbeef);
  t.deepEqual([...e.payload], [...pay(35, 1)]);
  t.is(b.byteLength - e.payload.byteLength, V2_HEADER_BYTES);
  t.true(V2_HEADER_BYTES <= 8);
});

test('golden: a tagged v2 frame and a batch decode', (t) => {
  const tagged = decodeV2(fixture('tagged.bin'));
  t.is(tagged.ctx, 0);
  t.is(tagged.entries[0]!.tag, 'test/cat/0003.jpg');
  t.deepEqual([...tagged.entries[0]!.payload], [...pay(4, 2)]);
  const batch = fixture('batch.bin');
  const p = decodeV2(batch);
  t.is(p.ctx, 9);
  t.deepEqual(
    p.entries.map((e) => [e.seq, e.ts16, e.payload.byteLength]),
    [
      [10, 100, 3],
      [11, 200, 200],
      [12, 300, 0],
    ],
  );
  t.deepEqual([...p.entries[1]!.payload], [...pay(200, 4)]);
  t.is(batch.byteLength, 203 + batchOverhead([3, 200, 0]));
});

test('golden: a v1 frame still decodes, and is not taken for v2', (t) => {
  const b = fixture('v1.bin');
  t.false(isV2(b));
  const f = decodeFrame(b, 1_780_000_000_000);
  t.is(f.frameId, 0x1234_5678);
  t.deepEqual(f.shape, [8, 4, 4]);
  t.is(f.captureTs, 1_780_000_000_123);
  t.throws(() => decodeV2(b), { instanceOf: FrameError });
});

test('golden: announce, ack and compact answers', (t) => {
  const a = parseAnnounce(fixture('announce.json'));
  t.is(a.id, 42);
  t.is(a.answers, 'compact');
  t.is(a.topk, 3);
  t.deepEqual(a.context, ctx);
  t.deepEqual(parseAnswerChannel(fixture('ack.bin')), { kind: 'ack', ack: { id: 42, ok: true } });
  const one = fixture('answer.bin');
  t.deepEqual(parseAnswerChannel(one), {
    kind: 'answer',
    answer: { frameId: 0x1234_5678, classIndex: 7, score: 0.9321 },
  });
  const four = fixture('answer-topk.bin');
  const m = parseAnswerChannel(four);
  t.is(m.kind, 'answer');
  if (m.kind === 'answer') {
    t.deepEqual(m.answer.more, [
      { classIndex: 3, score: 0.05 },
      { classIndex: 200, score: 0.0123 },
      { classIndex: 1, score: 0.004 },
    ]);
  }
  t.true(one.byteLength <= MAX_COMPACT_ANSWER_BYTES);
  t.true(four.byteLength <= MAX_COMPACT_ANSWER_BYTES);
});

test('the widest compact answer (uint32 id, large classes, top-4) fits 32 B', (t) => {
  const b = encodeCompactAnswer({
    frameId: 0xffff_ffff,
    classIndex: 999,
    score: 1,
    more: [0, 1, 2].map((i) => ({ classIndex: 65_000 + i, score: 0.3333 })),
  });
  t.true(b.byteLength <= MAX_COMPACT_ANSWER_BYTES, `${b.byteLength} B`);
});

test('a frame goes through its context and back: id, capture time, payload, tag', (t) => {
  const now = 1_780_000_123_456;
  const f: Frame = {
    frameId: ctx.frameBase + 500,
    modelId: 1,
    modelVersion: 2,
    codecId: 20,
    codecVersion: 1,
    point: 3,
    shape: [8, 4, 4],
    captureTs: now - 40,
    payload: pay(60, 9),
    tag: 'cam/0001.jpg',
  };
  const e = entryOf(ctx, f, now)!;
  t.truthy(e);
  const bytes = encodeV2(ctx.ctx, e);
  // the receiver's estimate of the device clock may be off by seconds
  for (const skew of [-20_000, 0, 350, 25_000]) {
    const back = frameOf(ctx, decodeV2(bytes).entries[0]!, now + skew);
    t.deepEqual({ ...back, payload: [...back.payload] }, { ...f, payload: [...f.payload] });
  }
});

test('frames out of v2 reach are left for v1: ids behind or far past the base, old captures', (t) => {
  const now = 1_780_000_000_000;
  const f = (frameId: number, captureTs = now): Frame => ({
    frameId,
    modelId: 1,
    modelVersion: 2,
    codecId: 20,
    codecVersion: 1,
    point: 3,
    shape: [8, 4, 4],
    captureTs,
    payload: new Uint8Array(3),
  });
  t.is(entryOf(ctx, f(ctx.frameBase - 1), now), null);
  t.is(entryOf(ctx, f(ctx.frameBase + 0x1_0000), now), null);
  t.is(entryOf(ctx, f(ctx.frameBase + 1, now - V2_MAX_AGE_MS - 1), now), null);
  t.is(entryOf(ctx, f(ctx.frameBase + 0xffff), now)?.seq, 0xffff);
  // ids wrap at 2^32 as v1's do
  const high = { ...ctx, frameBase: 0xffff_fff0 };
  const e = entryOf(high, f(5), now)!;
  t.is(frameOf(high, e, now).frameId, 5);
});

test('ts16 unwraps to the nearest time', (t) => {
  const now = 5 * 65_536 + 100;
  t.is(unwrapTs16(60_000, now), 4 * 65_536 + 60_000);
  t.is(unwrapTs16(200, now), 5 * 65_536 + 200);
});

test('damaged and odd v2 packets are refused with a FrameError', (t) => {
  const single = fixture('single.bin');
  const batch = fixture('batch.bin');
  const bad: [string, Uint8Array][] = [
    ['empty', new Uint8Array()],
    ['short header', single.subarray(0, 5)],
    ['reserved flags', Uint8Array.of(0x2c, 0, 0, 0, 0, 0)],
    ['tag past the end', Uint8Array.of(0x21, 0, 0, 0, 0, 0, 9, 65)],
    ['tag not printable', Uint8Array.of(0x21, 0, 0, 0, 0, 0, 1, 7)],
    ['batch of none', Uint8Array.of(0x22, 0, 0)],
    ['batch cut', batch.subarray(0, batch.byteLength - 1)],
    ['batch with extra bytes', Uint8Array.from([...batch, 0])],
    ['batch length runaway', Uint8Array.of(0x22, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x7f)],
    ['tagged batch', Uint8Array.of(0x23, 0, 1, 0, 0, 0, 0, 0)],
    ['v1 frame', fixture('v1.bin')],
  ];
  for (const [what, b] of bad) t.throws(() => decodeV2(b), { instanceOf: FrameError }, what);
  t.throws(() => decodeV2(single, 10), { message: /exceeds/ });
  t.throws(() => encodeV2Batch(1, []), { instanceOf: FrameError });
  t.throws(() => encodeV2(256, { seq: 0, ts16: 0, payload: new Uint8Array() }), {
    instanceOf: FrameError,
  });
});

test('announces and answers with bad fields are refused with a reason', (t) => {
  const ok = JSON.parse(Buffer.from(fixture('announce.json')).toString()) as Record<
    string,
    unknown
  >;
  const ctxOf = (o: Record<string, unknown>) => ({ ...ok, context: { ...ctx, ...o } });
  const bad: [string, unknown][] = [
    ['version', { ...ok, v: 2 }],
    ['id', { ...ok, id: -1 }],
    ['answers', { ...ok, answers: 'loud' }],
    ['topk', { ...ok, topk: 5 }],
    ['ctx', ctxOf({ ctx: 256 })],
    ['model id', ctxOf({ modelId: 70_000 })],
    ['shape', ctxOf({ shape: [0] })],
    ['frame base', ctxOf({ frameBase: 2 ** 32 })],
  ];
  for (const [what, v] of bad) {
    t.throws(() => parseAnnounce(Buffer.from(JSON.stringify(v))), { name: 'ContextError' }, what);
  }
  t.throws(() => parseAnnounce(Buffer.from('{')), { name: 'ContextError' });
  for (const b of [
    Buffer.from([0x93, 1, 2]),
    Buffer.from([0x93, 1, 2, 0xcd, 0x30, 0x00]), // score 12288 > 10000
    Buffer.from([0x94, 1, 2, 3, 0x91, 1]), // top-k of odd length
    encodeAck({ id: 1, ok: true }).subarray(0, 4),
  ]) {
    t.throws(() => parseAnswerChannel(b), { name: 'ContextError' });
  }
});

test('framed bytes of every learned point: a v2 header of at most 8 B (v1: over 20)', async (t) => {
  for (const codec of ['splitfleet', 'frankensplit']) {
    const bundle = await resolveBundle('resnet9w05-cifar10', { codec });
    const m = bundle.manifest;
    if (m.kind !== 'codec') throw new Error('expected a codec bundle');
    for (const p of m.codec.points) {
      const plan = splitPlan(bundle, codec, p.index);
      if (plan.kind !== 'feature') throw new Error('expected a feature plan');
      const n = p.symbolShape.reduce((a, b) => a * b, 1);
      const data = Float32Array.from({ length: n }, (_, i) => ((i * 7) % 5) - 2);
      const payload = plan.codec.encode({ data, shape: p.symbolShape }, p.index);
      const shape = [...p.symbolShape];
      const v2 = framedBytes(plan, { payload, shape }, 'v2') - payload.byteLength;
      const v1 = framedBytes(plan, { payload, shape }, 'v1') - payload.byteLength;
      t.true(v2 <= 8, `${codec} point ${p.index}: v2 header ${v2} B`);
      t.true(v1 > 20, `${codec} point ${p.index}: v1 header ${v1} B`);
    }
  }
});
