import test from 'ava';
import {
  learnedCodec,
  parseTables,
  type LearnedCodecSpec,
  type LearnedPoint,
} from '../../core/codec/learned.js';
import { CodecError } from '../../core/codec/types.js';
import { prng, randomTable } from '../helpers/rans-fixtures.js';

const point = (index: number, keep: number, entropy: string | null): LearnedPoint => ({
  index,
  label: `k=${keep}`,
  method: 'aecnn',
  entropy,
  symbolShape: [4, 3, 3],
  keep,
});

/** A learned codec's description, as a bundle manifest's codec section gives it. */
function spec(points: LearnedPoint[]): LearnedCodecSpec {
  return { method: 'aecnn', id: 5, version: 1, points };
}

const rand = prng(3);
const tables = Array.from({ length: 4 }, () => randomTable(rand, 8, 0));
const symbols = () => {
  const data = new Float32Array(36);
  for (let i = 0; i < 36; i++) data[i] = Math.floor(rand() * 8);
  return { data, shape: [4, 3, 3] };
};

test('rans points send the first k channels; the rest decode as -1', (t) => {
  const c = learnedCodec(
    spec([point(0, 1, 'entropy'), point(1, 2, 'entropy'), point(2, 4, 'entropy')]),
    new Map([['entropy', tables]]),
  );
  t.is(c.id, 5);
  const s = symbols();
  let last = 0;
  for (const [index, keep] of [
    [0, 1],
    [1, 2],
    [2, 4],
  ] as const) {
    const bytes = c.encode(s, index);
    t.true(bytes.length >= last, 'more channels, more bytes');
    last = bytes.length;
    const back = c.decode(bytes, [4, 3, 3], index);
    t.deepEqual([...back.data.subarray(0, keep * 9)], [...s.data.subarray(0, keep * 9)]);
    t.true(back.data.subarray(keep * 9).every((v) => v === -1));
  }
});

test('raw8 points carry one byte per symbol and check the range', (t) => {
  const c = learnedCodec(spec([point(0, 4, null)]), new Map());
  const s = symbols();
  const bytes = c.encode(s, 0);
  t.is(bytes.length, 36);
  t.deepEqual([...c.decode(bytes, [4, 3, 3], 0).data], [...s.data]);
  s.data[3] = 256;
  t.throws(() => c.encode(s, 0), { instanceOf: CodecError, message: /8-bit/ });
  t.throws(() => c.decode(bytes.subarray(1), [4, 3, 3], 0), { instanceOf: CodecError });
});

test('wrong shapes, points, non-integer symbols and corrupt payloads are CodecErrors', (t) => {
  const c = learnedCodec(spec([point(0, 4, 'entropy')]), new Map([['entropy', tables]]));
  const s = symbols();
  t.throws(() => c.encode({ data: s.data, shape: [36] }, 0), { instanceOf: CodecError });
  t.throws(() => c.encode(s, 7), { instanceOf: CodecError });
  s.data[0] = 0.5;
  t.throws(() => c.encode(s, 0), { instanceOf: CodecError, message: /integer/ });
  s.data[0] = 1;
  const bytes = c.encode(s, 0);
  t.throws(() => c.decode(bytes, [4, 3, 4], 0), { instanceOf: CodecError });
  t.throws(() => c.decode(bytes.subarray(0, bytes.length - 1), [4, 3, 3], 0), {
    instanceOf: CodecError,
  });
});

test('tables files are validated', (t) => {
  const ok = JSON.stringify({ probBits: 16, tables: [{ offset: -2, cdf: [0, 100, 65536] }] });
  t.is(parseTables(ok).length, 1);
  t.throws(() => parseTables('{"probBits": 12, "tables": []}'), { instanceOf: CodecError });
  t.throws(
    () => parseTables(JSON.stringify({ probBits: 16, tables: [{ offset: 0, cdf: [0, 70000] }] })),
    { instanceOf: CodecError },
  );
  t.throws(() => learnedCodec(spec([point(0, 4, 'entropy')]), new Map()), {
    instanceOf: CodecError,
  });
});

test('a rans codec writes stream 2 and reads stream 1 too; an unknown layout is refused', (t) => {
  const c = learnedCodec(spec([point(0, 4, 'entropy')]), new Map([['entropy', tables]]));
  t.is(c.version, 2);
  t.deepEqual(c.reads, [1, 2]);
  const s = symbols();
  const now = c.encode(s, 0);
  const old = c.encode(s, 0, 1);
  t.true(now.length < old.length, `${now.length} B vs ${old.length} B`);
  for (const [bytes, v] of [
    [now, 2],
    [old, 1],
  ] as const) {
    t.deepEqual([...c.decode(bytes, [4, 3, 3], 0, v).data], [...s.data]);
  }
  // the layouts are not interchangeable: a stream 1 payload read as stream 2 is refused
  t.throws(() => c.decode(old, [4, 3, 3], 0, 2), { instanceOf: CodecError });
  t.throws(() => c.decode(now, [4, 3, 3], 0, 3), { message: /version 3 is not read/ });
  t.throws(
    () =>
      learnedCodec(
        { ...spec([point(0, 4, 'entropy')]), version: 3 },
        new Map([['entropy', tables]]),
      ),
    { message: /bitstream version 3/ },
  );
  // raw8 has one layout: its manifest's
  const raw = learnedCodec(spec([point(0, 4, null)]), new Map());
  t.is(raw.version, 1);
  t.deepEqual(raw.reads, [1]);
});
