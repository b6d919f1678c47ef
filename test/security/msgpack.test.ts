/**
 * msgpack from the network decodes with no extension the sender can trigger: a frame that
 * uses msgpackr's shared-reference (structured clone) extension to build a value that
 * doubles at each nesting level is refused at once, with a short reason, instead of
 * costing the broker thread time and memory exponential in its depth. Every extension
 * type is refused; depth and element counts are bounded; error reasons stay under 1 KiB.
 */
import test from 'ava';
import { connectAsync, type MqttClient } from 'mqtt';
import { decodeFrame, FrameError } from '../../core/wire/frame.js';
import { errorMessage } from '../../core/wire/messages.js';
import { decodeChunk, OtaError } from '../../core/wire/ota.js';
import { DecodeFailure } from '../../edge-broker/decode/decoder.js';
import type { Edge } from '../../edge-broker/edge.js';
import { testEdge } from '../helpers/edge.js';
import { waitFor } from '../helpers/wait.js';

const MAX_REASON = 1024;

const u32 = (k: number) => [(k >>> 24) & 255, (k >>> 16) & 255, (k >>> 8) & 255, k & 255];

/**
 * A value of 3 * 2^levels leaves in about 13 bytes a level: node k is "id k" (ext 0x69)
 * wrapping [node k-1, pointer to k-1] (ext 0x70), so each level refers to the one below
 * twice. A decoder that honours the references hands back a tree whose string form
 * doubles with every level.
 */
function sharedRefs(levels: number): number[] {
  let node = [0xd6, 0x69, ...u32(0), 0x93, 1, 2, 3];
  for (let k = 1; k <= levels; k++) {
    node = [0xd6, 0x69, ...u32(k), 0x92, ...node, 0xd6, 0x70, ...u32(k - 1)];
  }
  return node;
}

/** A v1 frame whose version field is `first` (the other nine fields are valid). */
const frameWith = (first: number[], trailing: number[] = []) =>
  Uint8Array.from([0x9a, ...first, 2, 3, 4, 5, 6, 7, 0x91, 1, 0, 0xc4, 1, 0, ...trailing]);

/** A chunk map {v: first, id: "a"} with `trailing` bytes after it. */
const chunkWith = (first: number[], trailing: number[] = []) =>
  Uint8Array.from([0x82, 0xa1, 0x76, ...first, 0xa2, 0x69, 0x64, 0xa1, 0x61, ...trailing]);

/** Fastest of three tries (a busy machine may stall any one), and the error it threw. */
function timed(fn: () => unknown): { ms: number; err: unknown } {
  let best = Infinity;
  let err: unknown;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    try {
      fn();
      err = undefined;
    } catch (e) {
      err = e;
    }
    best = Math.min(best, performance.now() - t0);
  }
  return { ms: best, err };
}

const utf8Bytes = (s: string) => Buffer.byteLength(s, 'utf8');

test('a frame built of nested shared references is refused fast, with a short reason', (t) => {
  // 18 levels: 257 bytes. Honoured, it costs ~0.1 s and a 1.5 MB error reason (each
  // further level doubles both).
  for (const trailing of [[], [0xc0]]) {
    const bytes = frameWith(sharedRefs(18), trailing);
    t.true(bytes.byteLength < 300);
    const { ms, err } = timed(() => decodeFrame(bytes));
    t.true(err instanceof FrameError, String(err).slice(0, 200));
    const reason = (err as Error).message;
    t.true(utf8Bytes(reason) <= MAX_REASON, `reason of ${utf8Bytes(reason)} B`);
    // refused by the pre-scan, before any decoding: the work is bounded by the bytes
    t.regex(reason, /extension/);
    t.log(`refused in ${ms.toFixed(2)} ms`);
  }
});

test('an OTA chunk built of nested shared references is refused fast', (t) => {
  for (const trailing of [[], [0xc0]]) {
    const bytes = chunkWith(sharedRefs(18), trailing);
    const { ms, err } = timed(() => decodeChunk(bytes));
    t.true(err instanceof OtaError, String(err).slice(0, 200));
    t.true(utf8Bytes((err as Error).message) <= MAX_REASON);
    t.regex((err as Error).message, /extension/);
    t.log(`refused in ${ms.toFixed(2)} ms`);
  }
});

/** Every way to write an extension of `type`: fixext 1..16 and ext 8/16/32. */
function extForms(type: number): number[][] {
  const body = (n: number) => new Array<number>(n).fill(0);
  return [
    [0xd4, type, ...body(1)],
    [0xd5, type, ...body(2)],
    [0xd6, type, ...body(4)],
    [0xd7, type, ...body(8)],
    [0xd8, type, ...body(16)],
    [0xc7, 3, type, ...body(3)],
    [0xc8, 0, 5, type, ...body(5)],
    [0xc9, 0, 0, 0, 6, type, ...body(6)],
  ];
}

test('every msgpack extension type, in every form, is refused with a clear error', (t) => {
  for (let type = 0; type < 256; type++) {
    for (const ext of extForms(type)) {
      for (const [what, bytes] of [
        ['frame', frameWith(ext)],
        ['nested in a frame', frameWith([0x91, 0x91, ...ext])],
      ] as const) {
        const e = t.throws(() => decodeFrame(bytes), { instanceOf: FrameError }, `${what}`);
        if (!e) return;
        const signed = type > 127 ? type - 256 : type;
        if (!e.message.includes(`extension type ${signed}`)) {
          t.fail(`${what}, ext ${signed} as 0x${ext[0]!.toString(16)}: ${e.message}`);
          return;
        }
      }
      t.throws(() => decodeChunk(chunkWith(ext)), { instanceOf: OtaError, message: /extension/ });
    }
  }
});

test('depth and element counts are bounded; the reserved byte 0xc1 is refused', (t) => {
  const deep = (n: number) => frameWith([...new Array<number>(n).fill(0x91), 1]);
  t.throws(() => decodeFrame(deep(40)), { instanceOf: FrameError, message: /deep/ });
  // an array that declares more elements than there are bytes left
  t.throws(() => decodeFrame(frameWith([0xdd, 0xff, 0xff, 0xff, 0xff])), {
    instanceOf: FrameError,
    message: /elements|end/,
  });
  // many elements in a small frame
  const many = [0xdc, 0x27, 0x10, ...new Array<number>(10_000).fill(0xc0)];
  t.throws(() => decodeFrame(frameWith(many)), { instanceOf: FrameError, message: /elements/ });
  t.throws(() => decodeFrame(frameWith([0xc1])), { instanceOf: FrameError, message: /0xc1/ });
  // map keys are strings: a map key that is an array is refused before any decoding
  t.throws(() => decodeChunk(Uint8Array.from([0x81, 0x91, 1, 1])), {
    instanceOf: OtaError,
    message: /key/,
  });
});

test('a huge field is summarized in the reason, not repeated', (t) => {
  const big = 'x'.repeat(60_000);
  const str = [0xda, (big.length >> 8) & 255, big.length & 255, ...Buffer.from(big)];
  const e = t.throws(() => decodeFrame(frameWith(str)), { instanceOf: FrameError });
  t.true(utf8Bytes(e!.message) <= MAX_REASON);
  t.regex(e!.message, /string of 60000 chars/);
});

test('error reasons sent to a device stay under 1 KiB', (t) => {
  const long = '\u00e9'.repeat(100_000);
  t.true(utf8Bytes(errorMessage('d', null, 'malformed-frame', long, 'e').reason) <= MAX_REASON);
  t.true(utf8Bytes(new DecodeFailure('malformed-frame', long, null).message) <= MAX_REASON);
  t.true(
    utf8Bytes(DecodeFailure.from(new Error(long), 'inference-failed', 1).message) <= MAX_REASON,
  );
  t.true(utf8Bytes(new FrameError(long).message) <= MAX_REASON);
  t.true(utf8Bytes(new OtaError(long).message) <= MAX_REASON);
});

let edge: Edge | undefined;
const clients: MqttClient[] = [];
test.after.always(async () => {
  for (const c of clients) await c.endAsync(true);
  await edge?.close();
});

test('over MQTT: the sender gets a short error, another client is answered at once', async (t) => {
  edge = await testEdge({ edgeId: 'edge-m', fleet: 'sec4' });
  const bad = await connectAsync(edge.url, { reconnectPeriod: 0, clientId: 'mal' });
  const good = await connectAsync(edge.url, { reconnectPeriod: 0, clientId: 'good' });
  clients.push(bad, good);
  const errors: Buffer[] = [];
  bad.on('message', (_topic, payload) => errors.push(payload));
  await bad.subscribeAsync('splitfleet/sec4/device/mal/error', { qos: 1 });
  // 20 levels: 283 bytes, ~0.4 s and a 6 MB reason each where the references are honoured
  const frame = frameWith(sharedRefs(20));
  const sent = 4;
  for (let i = 0; i < sent; i++) {
    bad.publish('splitfleet/sec4/device/mal/features', Buffer.from(frame), { qos: 0 });
  }
  const t0 = performance.now();
  await good.publishAsync('splitfleet/sec4/device/good/status', '{}', { qos: 1 });
  const ackMs = performance.now() - t0;
  t.log(`another client's PUBACK after ${ackMs.toFixed(0)} ms`);
  await waitFor(() => errors.length >= 1, 20_000);
  for (const e of errors) {
    t.true(e.byteLength <= 1200, `error message of ${e.byteLength} B`);
    const body = JSON.parse(e.toString('utf8')) as { code: string; reason: string };
    t.is(body.code, 'malformed-frame');
    t.regex(body.reason, /extension/);
  }
});
