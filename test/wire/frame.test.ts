import test from 'ava';
import { Packr } from 'msgpackr';
import {
  decodeFrame,
  encodeFrame,
  FrameError,
  MAX_FRAME_BYTES,
  MAX_PAYLOAD_BYTES,
  ts32,
  unwrapTs32,
  type Frame,
} from '../../core/wire/frame.js';

const now = Date.UTC(2026, 10, 23, 12, 0, 0);
const base = (over: Partial<Frame> = {}): Frame => ({
  frameId: 123_456,
  modelId: 1,
  modelVersion: 1,
  codecId: 3,
  codecVersion: 1,
  point: 0,
  shape: [64, 16, 16],
  captureTs: now - 20,
  payload: Uint8Array.from({ length: 60 }, (_, i) => (i * 7) & 0xff),
  ...over,
});

test('round trip keeps every field', (t) => {
  const f = base();
  const back = decodeFrame(encodeFrame(f), now);
  t.deepEqual({ ...back, payload: [...back.payload] }, { ...f, payload: [...f.payload] });
});

test('header stays within 24 bytes for a 60-byte payload', (t) => {
  for (const frameId of [0, 200, 70_000, 0xffff_ffff]) {
    const f = base({ frameId });
    const overhead = encodeFrame(f).byteLength - f.payload.byteLength;
    t.true(overhead <= 24, `frameId ${frameId}: ${overhead} B of header`);
  }
});

test('decodes from a Buffer view with a byteOffset (as mqtt.js delivers)', (t) => {
  const bytes = encodeFrame(base());
  const pool = Buffer.alloc(bytes.byteLength + 37, 0xee);
  pool.set(bytes, 13);
  const view = pool.subarray(13, 13 + bytes.byteLength);
  t.is(decodeFrame(view, now).frameId, 123_456);
});

test('rejects truncated frames at every length', (t) => {
  const bytes = encodeFrame(base());
  for (let n = 0; n < bytes.byteLength; n++) {
    t.throws(
      () => decodeFrame(bytes.subarray(0, n), now),
      { instanceOf: FrameError },
      `length ${n}`,
    );
  }
});

test('rejects oversize frames and payloads', (t) => {
  t.throws(() => decodeFrame(new Uint8Array(MAX_FRAME_BYTES + 1), now), { message: /exceeds/ });
  t.throws(() => encodeFrame(base({ payload: new Uint8Array(MAX_PAYLOAD_BYTES + 1) })), {
    message: /exceeds/,
  });
});

test('rejects a wrong version and reports the frame id it could read', (t) => {
  const raw = new Packr({ useRecords: false }).pack([
    2,
    77,
    1,
    1,
    3,
    1,
    0,
    [4],
    5,
    new Uint8Array(4),
  ]);
  const e = t.throws(() => decodeFrame(raw, now), { instanceOf: FrameError });
  t.regex(e.message, /version 2/);
  t.is(e.frameId, 77);
});

test('rejects malformed fields', (t) => {
  const packr = new Packr({ useRecords: false });
  const ok = [1, 5, 1, 1, 3, 1, 0, [4], 5, new Uint8Array(4)];
  const cases: [number, unknown, RegExp][] = [
    [1, -1, /frameId/],
    [2, 70_000, /modelId/],
    [4, 300, /codecId/],
    [6, 1.5, /point/],
    [7, [], /shape/],
    [7, [0, 3], /shape/],
    [7, [1 << 12, 1 << 12], /cap/],
    [8, 'now', /ts32/],
    [9, 'text', /bin/],
  ];
  for (const [i, v, re] of cases) {
    const arr: unknown[] = [...ok];
    arr[i] = v;
    t.throws(
      () => decodeFrame(packr.pack(arr), now),
      { instanceOf: FrameError, message: re },
      `field ${i}`,
    );
  }
  t.throws(() => decodeFrame(packr.pack({ a: 1 }), now), { message: /array/ });
  t.throws(() => decodeFrame(packr.pack([...ok, 'tag', 1]), now), { message: /10 fields/ });
  t.throws(() => decodeFrame(Uint8Array.of(0xc1), now), { instanceOf: FrameError });
});

test('capture time survives the 32-bit wrap', (t) => {
  for (const skew of [-5_000, 0, 5_000, 86_400_000]) {
    const capture = now - 100 + skew;
    t.is(unwrapTs32(ts32(capture), now), capture);
  }
  const edge = 0x1_0000_0000 * 400 + 10; // receiver just after a wrap
  t.is(unwrapTs32(ts32(edge - 50), edge), edge - 50);
});

test('an optional tag rides as an 11th field, costs its length, and is checked', (t) => {
  const plain = encodeFrame(base());
  const tagged = encodeFrame(base({ tag: 'test/airplane/0010.jpg' }));
  t.is(decodeFrame(tagged, now).tag, 'test/airplane/0010.jpg');
  t.is(decodeFrame(plain, now).tag, undefined);
  t.is(tagged.byteLength - plain.byteLength, 'test/airplane/0010.jpg'.length + 1);
  for (const bad of ['', 'x'.repeat(129), 'tab\there', 'caf\u00e9']) {
    t.throws(
      () => encodeFrame(base({ tag: bad })),
      { instanceOf: FrameError },
      JSON.stringify(bad),
    );
  }
  // a tag that is not a string, from the wire
  const raw = new Packr({ useRecords: false }).pack([
    1,
    5,
    1,
    1,
    3,
    1,
    0,
    [1],
    0,
    new Uint8Array(1),
    7,
  ]);
  t.throws(() => decodeFrame(raw, now), { instanceOf: FrameError, message: /tag/ });
});
