/**
 * Fuzz targets: every parser and decoder that reads bytes from the network, with the
 * one error type each may throw on bad input. Anything else thrown (a RangeError, a
 * TypeError, an out-of-bounds read) is a crash. Used by fuzz.test.ts (a few thousand
 * cases in CI) and `npm run fuzz` (test/fuzz/run.ts, 100,000 per target).
 */
import fc from 'fast-check';
import { codecByName } from '../../core/codec/registry.js';
import { ransDecode } from '../../core/codec/rans.js';
import { CodecError, type FeatureCodec } from '../../core/codec/types.js';
import { bundleFor, type Bundle } from '../../core/model/bundle.js';
import { decodeFrame, encodeFrame, FrameError } from '../../core/protocol/frame.js';
import { decodeChunk, OtaError, parseFetch } from '../../core/protocol/ota.js';
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

const bytes = (max: number) => fc.uint8Array({ minLength: 0, maxLength: max });

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
const learnedBundle = () => (learned ??= bundleFor('resnet9w05-cifar10', 'splitfleet'));

export async function targets(): Promise<Target[]> {
  const bundle = await learnedBundle();
  const codec = bundle.codec as FeatureCodec;
  const m = bundle.manifest;
  if (m.kind !== 'codec') throw new Error('expected a codec bundle');
  const point = m.codec.points[0]!;
  const n = point.symbolShape.reduce((a, b) => a * b, 1);
  const splitQ = codecByName('split-q');
  const decodeLearned = (payload: Uint8Array) =>
    codec.decode(payload, point.symbolShape, point.index);
  return [
    {
      name: 'frame: random bytes',
      property: fc.property(bytes(300), (b) => refusesWith(FrameError, () => decodeFrame(b))),
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
      name: 'rANS: random streams, a 3-symbol table',
      property: fc.property(bytes(400), fc.integer({ min: 1, max: 2048 }), (b, n) =>
        refusesWith(CodecError, () =>
          ransDecode(
            b,
            n,
            [{ offset: -8, cdf: Uint32Array.from([0, 1000, 30000, 65536]) }],
            () => 0,
          ),
        ),
      ),
    },
    {
      name: `learned codec (${m.name}): random payloads`,
      property: fc.property(bytes(400), (b) => refusesWith(CodecError, () => decodeLearned(b))),
    },
    {
      name: `learned codec (${m.name}): damaged valid bitstreams`,
      property: fc.property(
        fc.array(fc.integer({ min: -2, max: 2 }), { minLength: n, maxLength: n }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        (symbols, flips) => {
          const bits = codec.encode(
            { data: Float32Array.from(symbols), shape: point.symbolShape },
            point.index,
          );
          const b = Uint8Array.from(bits);
          for (const [at, v] of flips) b[at % b.length] = v;
          refusesWith(CodecError, () => decodeLearned(b));
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
        refusesWith(OtaError, () => decodeChunk(b));
        refusesWith(OtaError, () => parseFetch(b));
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
