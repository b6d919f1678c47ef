/**
 * Fuzz targets: every parser and decoder that reads bytes from the network, with the
 * one error type each may throw on bad input. Anything else thrown (a RangeError, a
 * TypeError, an out-of-bounds read) is a crash. Used by fuzz.test.ts (a few thousand
 * cases in CI) and `npm run fuzz` (test/fuzz/run.ts, 100,000 per target).
 */
import fc from 'fast-check';
import { codecByName } from '../../core/codec/registry.js';
import { RANS_STREAMS, ransDecode } from '../../core/codec/rans.js';
import { CodecError, type FeatureCodec } from '../../core/codec/types.js';
import { resolveBundle, type Bundle } from '../../core/model/bundle.js';
import { ContextError, parseAnnounce, parseAnswerChannel } from '../../core/wire/context.js';
import { decodeV2, encodeV2Batch } from '../../core/wire/frame-v2.js';
import { decodeFrame, encodeFrame, FrameError } from '../../core/wire/frame.js';
import { MAX_REASON_BYTES } from '../../core/wire/messages.js';
import { checkMsgpack, decodeMsgpack, MsgpackError } from '../../core/wire/msgpack.js';
import { decodeChunk, OtaError, parseFetch } from '../../core/wire/ota.js';
import {
  checkConnect,
  checkFilters,
  checkPublishTopic,
  ProtocolViolation,
} from '../../edge-broker/compliance.js';

export interface Target {
  name: string;
  /** A property over random inputs; throws only on a crash. */
  property: fc.IPropertyWithHooks<[unknown]> | fc.IProperty<[unknown]>;
}

type ErrorClass = abstract new (...args: never[]) => Error;

/** Run `fn`; an error of class `allowed` is the refusal we want, anything else rethrows. */
function refusesWith(allowed: ErrorClass, fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof allowed)) throw e;
  }
}

/** Longest a refusal of a few hundred bytes may take (generous for a busy machine; the
 * work itself is microseconds). */
const MAX_REFUSAL_MS = 250;

/** As refusesWith, and the refusal is quick and its reason at most MAX_REASON_BYTES. */
function refusesShortly(allowed: ErrorClass, fn: () => unknown): void {
  const t0 = performance.now();
  try {
    fn();
  } catch (e) {
    if (!(e instanceof allowed)) throw e;
    const n = Buffer.byteLength(e.message, 'utf8');
    if (n > MAX_REASON_BYTES) throw new Error(`reason of ${n} B: ${e.message.slice(0, 200)}`);
  }
  const ms = performance.now() - t0;
  if (ms > MAX_REFUSAL_MS) throw new Error(`took ${ms.toFixed(0)} ms`);
}

const bytes = (max: number) => fc.uint8Array({ minLength: 0, maxLength: max });

const u16 = (n: number) => [(n >> 8) & 255, n & 255];
const u32 = (n: number) => [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];

/** An extension of any type code in any form: fixext 1/2/4/8/16, ext 8/16/32. */
const extension = fc
  .record({
    type: fc.integer({ min: 0, max: 255 }),
    form: fc.integer({ min: 0, max: 7 }),
    data: fc.uint8Array({ maxLength: 40 }),
  })
  .map(({ type, form, data }) => {
    const fixed = [1, 2, 4, 8, 16][form];
    if (fixed !== undefined) {
      return [0xd4 + form, type, ...Array.from({ length: fixed }, (_, i) => data[i] ?? 0)];
    }
    const n = data.length;
    const head = form === 5 ? [0xc7, n] : form === 6 ? [0xc8, ...u16(n)] : [0xc9, ...u32(n)];
    return [...head, type, ...data];
  });

/** msgpackr's shared references: `levels` ids, each referring twice to the one below. */
const sharedRefs = fc.integer({ min: 1, max: 40 }).map((levels) => {
  let node = [0xd6, 0x69, ...u32(0), 0x93, 1, 2, 3];
  for (let k = 1; k <= levels; k++) {
    node = [0xd6, 0x69, ...u32(k), 0x92, ...node, 0xd6, 0x70, ...u32(k - 1)];
  }
  return node;
});

/** Well-formed scalars of every msgpack family (strings, bin, ints, floats, nil, bools). */
const scalar: fc.Arbitrary<number[]> = fc.oneof(
  fc.integer({ min: 0, max: 0x7f }).map((n) => [n]),
  fc.integer({ min: 0xe0, max: 0xff }).map((n) => [n]),
  fc.constantFrom<number[]>([0xc0], [0xc2], [0xc3], [0xcc, 200], [0xcd, 1, 2], [0xd0, 0x80]),
  fc.constantFrom<number[]>(
    [0xcf, 0, 0, 0, 1, 0, 0, 0, 0],
    [0xd3, 255, 255, 255, 255, 255, 255, 255, 0],
  ),
  fc.constantFrom<number[]>([0xca, 0x3f, 0x80, 0, 0], [0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]),
  fc.string({ maxLength: 40 }).map((s) => {
    const b = [...Buffer.from(s)];
    return b.length < 32 ? [0xa0 | b.length, ...b] : [0xd9, b.length, ...b];
  }),
  fc.uint8Array({ maxLength: 40 }).map((b) => [0xc4, b.length, ...b]),
);

/** A random msgpack value: scalars, extensions and shared references, in arrays and maps
 * (whose keys are sometimes not strings), nested up to 20 deep. */
const msgpackValue: fc.Arbitrary<number[]> = fc.letrec<{ value: number[] }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', maxDepth: 20 },
    scalar,
    extension,
    sharedRefs,
    fc.array(tie('value'), { maxLength: 6 }).map((items) => [0x90 | items.length, ...items.flat()]),
    fc
      .array(fc.tuple(fc.oneof(scalar, tie('value')), tie('value')), { maxLength: 4 })
      .map((kv) => [0x80 | kv.length, ...kv.flat(2)]),
  ),
})).value;

/** A valid frame with one of its fields (or a place inside its shape) replaced by `v`. */
const frameWith = fc.tuple(msgpackValue, fc.integer({ min: 0, max: 10 })).map(([v, at]) => {
  const fields: number[][] = [[1], [5], [1], [2], [3], [1], [0], [0x91, 4], [0], [0xc4, 1, 0]];
  if (at === 10) fields[7] = [0x92, 4, ...v];
  else fields[at] = v;
  return Uint8Array.from([0x9a, ...fields.flat()]);
});

/** A valid frame with a random payload, then damaged: bytes flipped, cut or added. */
const damagedFrame = fc
  .record({
    payload: fc.uint8Array({ maxLength: 200 }),
    flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
    cut: fc.nat(),
    extra: fc.uint8Array({ maxLength: 8 }),
    tagged: fc.boolean(),
  })
  .map(({ payload, flips, cut, extra, tagged }) => {
    const f = encodeFrame({
      frameId: 77,
      modelId: 1,
      modelVersion: 2,
      codecId: 3,
      codecVersion: 1,
      point: 2,
      shape: [payload.length || 1],
      captureTs: Date.now(),
      payload,
      ...(tagged ? { tag: 'test/cat/0003.jpg' } : {}),
    });
    const b = Uint8Array.from(f);
    for (const [at, v] of flips) b[at % b.length] = v;
    const kept = b.subarray(0, b.length - (cut % 3 === 0 ? cut % b.length : 0));
    return Uint8Array.from([...kept, ...(cut % 5 === 0 ? extra : [])]);
  });

/** The shipped learned codec whose bitstream is rANS (the tables as shipped). */
let learned: Promise<Bundle> | undefined;
const learnedBundle = () =>
  (learned ??= resolveBundle('resnet9w05-cifar10', { codec: 'splitfleet' }));

export async function targets(): Promise<Target[]> {
  const bundle = await learnedBundle();
  const codec = bundle.codec as FeatureCodec;
  const m = bundle.manifest;
  if (m.kind !== 'codec') throw new Error('expected a codec bundle');
  const point = m.codec.points[0]!;
  const n = point.symbolShape.reduce((a, b) => a * b, 1);
  const splitQ = codecByName('split-q');
  const decodeLearned = (payload: Uint8Array, version?: number) =>
    codec.decode(payload, point.symbolShape, point.index, version);
  const versions = fc.constantFrom(...(codec.reads ?? [codec.version]));
  return [
    {
      name: 'frame: random bytes',
      property: fc.property(bytes(300), (b) => refusesShortly(FrameError, () => decodeFrame(b))),
    },
    {
      name: 'msgpack: random values with extensions, shared references, deep nesting',
      property: fc.property(msgpackValue, fc.nat(24), (v, nest) => {
        // nested once more in `nest` one-element arrays: past the depth limit at times
        const b = Uint8Array.from([...new Array<number>(nest).fill(0x91), ...v]);
        let accepted = false;
        refusesShortly(MsgpackError, () => {
          checkMsgpack(b);
          accepted = true;
        });
        // what the scan accepts, msgpackr decodes: its own refusals never show up
        if (accepted) decodeMsgpack(b);
      }),
    },
    {
      name: 'frame and OTA chunk: fields that are extensions or odd msgpack values',
      property: fc.property(frameWith, (b) => {
        refusesShortly(FrameError, () => decodeFrame(b));
        refusesShortly(OtaError, () => decodeChunk(b));
      }),
    },
    {
      name: 'frame: damaged valid frames',
      property: fc.property(damagedFrame, (b) => {
        let f;
        try {
          f = decodeFrame(b);
        } catch (e) {
          if (!(e instanceof FrameError)) throw e;
          return;
        }
        // whatever decodes must encode again to a frame that decodes the same
        const again = decodeFrame(encodeFrame(f));
        if (again.frameId !== f.frameId || again.payload.length !== f.payload.length)
          throw new Error('decode/encode round trip differs');
      }),
    },
    {
      name: 'frame v2: random bytes behind a v2 first byte',
      property: fc.property(fc.integer({ min: 0x20, max: 0x2f }), bytes(300), (first, b) =>
        refusesShortly(FrameError, () => decodeV2(Uint8Array.from([first, ...b]))),
      ),
    },
    {
      name: 'frame v2: damaged valid batches',
      property: fc.property(
        fc.array(fc.uint8Array({ maxLength: 150 }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        fc.nat(8),
        (payloads, flips, cut) => {
          const good = encodeV2Batch(
            1,
            payloads.map((payload, i) => ({ seq: i, ts16: i * 7, payload })),
          );
          const b = Uint8Array.from(good.subarray(0, good.length - cut));
          for (const [at, v] of flips) b[at % b.length] = v;
          let p;
          try {
            p = decodeV2(b);
          } catch (e) {
            if (!(e instanceof FrameError)) throw e;
            return;
          }
          // what decodes stays within the packet
          const total = p.entries.reduce((n, e) => n + e.payload.byteLength, 0);
          if (total > b.byteLength) throw new Error('payloads larger than the packet');
        },
      ),
    },
    {
      name: 'wire v2 announce and answer channel: random bytes',
      property: fc.property(bytes(300), (b) => {
        refusesShortly(ContextError, () => parseAnnounce(b));
        refusesShortly(ContextError, () => parseAnswerChannel(b));
      }),
    },
    {
      name: 'wire v2 announce: random JSON values',
      property: fc.property(fc.json({ maxDepth: 4 }), (j) =>
        refusesShortly(ContextError, () => parseAnnounce(Buffer.from(j))),
      ),
    },
    {
      name: 'rANS: random streams, a 3-symbol table, every stream layout',
      property: fc.property(
        bytes(400),
        fc.integer({ min: 1, max: 2048 }),
        fc.constantFrom(...RANS_STREAMS),
        (b, n, stream) =>
          refusesWith(CodecError, () =>
            ransDecode(
              b,
              n,
              [{ offset: -8, cdf: Uint32Array.from([0, 1000, 30000, 65536]) }],
              () => 0,
              undefined,
              stream,
            ),
          ),
      ),
    },
    {
      name: `learned codec (${m.name}): random payloads`,
      property: fc.property(bytes(400), versions, (b, v) =>
        refusesWith(CodecError, () => decodeLearned(b, v)),
      ),
    },
    {
      name: `learned codec (${m.name}): damaged valid bitstreams`,
      property: fc.property(
        fc.array(fc.integer({ min: -2, max: 2 }), { minLength: n, maxLength: n }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        versions,
        (symbols, flips, version) => {
          const bits = codec.encode(
            { data: Float32Array.from(symbols), shape: point.symbolShape },
            point.index,
            version,
          );
          const b = Uint8Array.from(bits);
          for (const [at, v] of flips) b[at % b.length] = v;
          refusesWith(CodecError, () => decodeLearned(b, version));
        },
      ),
    },
    {
      name: 'split-q codec: random payloads',
      property: fc.property(bytes(3000), fc.integer({ min: 0, max: 3 }), (b, p) =>
        refusesWith(CodecError, () => splitQ.decode(b, [8, 16, 16], p)),
      ),
    },
    {
      name: 'OTA chunk and fetch request: random bytes',
      property: fc.property(bytes(300), (b) => {
        refusesShortly(OtaError, () => decodeChunk(b));
        refusesShortly(OtaError, () => parseFetch(b));
      }),
    },
    {
      name: 'MQTT CONNECT / PUBLISH / SUBSCRIBE bodies: random bytes',
      property: fc.property(bytes(200), (b) => {
        const buf = Buffer.from(b);
        refusesWith(ProtocolViolation, () => checkConnect(buf));
        refusesWith(ProtocolViolation, () => checkPublishTopic(buf));
        refusesWith(ProtocolViolation, () => checkFilters(buf, true));
      }),
    },
  ] as Target[];
}
