import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  checkTable,
  RANS_STREAMS,
  ransDecode,
  ransEncode,
  type CdfTable,
  type RansStream,
} from '../../core/codec/rans.js';
import { CodecError } from '../../core/codec/types.js';
import { PROJECT_ROOT } from '../../core/paths.js';
import { prng, randomTable, typescriptCases } from '../helpers/rans-fixtures.js';

interface Case {
  name: string;
  tables: { offset: number; cdf: number[] }[];
  tableIndex: number[];
  values: number[];
  bitstream: string;
  stream: RansStream;
}

function load(file: string): Case[] {
  const doc = JSON.parse(
    readFileSync(join(PROJECT_ROOT, 'test', 'fixtures', 'rans', file), 'utf8'),
  ) as { probBits: number; cases: Case[] };
  return doc.cases;
}
const tablesOf = (c: Case): CdfTable[] =>
  c.tables.map((t) => ({ offset: t.offset, cdf: Uint32Array.from(t.cdf) }));

for (const file of ['python.json', 'typescript.json']) {
  test(`golden ${file}: encoding is byte-identical and decoding restores every value`, (t) => {
    const cases = load(file);
    t.true(cases.length >= 12);
    t.deepEqual([...new Set(cases.map((c) => c.stream))].sort(), [...RANS_STREAMS]);
    for (const c of cases) {
      const tables = tablesOf(c);
      tables.forEach((tb, i) => checkTable(tb, i));
      const bits = ransEncode(c.values, tables, (i) => c.tableIndex[i] ?? 0, c.stream);
      t.is(Buffer.from(bits).toString('hex'), c.bitstream, c.name);
      const back = ransDecode(
        Buffer.from(c.bitstream, 'hex'),
        c.values.length,
        tables,
        (i) => c.tableIndex[i] ?? 0,
        undefined,
        c.stream,
      );
      t.deepEqual([...back], c.values, c.name);
    }
  });
}

test('the TypeScript fixture file is what the fixture maker makes now', (t) => {
  t.deepEqual(JSON.parse(JSON.stringify(typescriptCases())), load('typescript.json'));
});

test('random tables and values round-trip in every stream layout, escapes included', (t) => {
  const rand = prng(1);
  for (let k = 0; k < 100; k++) {
    const stream = RANS_STREAMS[k % RANS_STREAMS.length]!;
    const tables = Array.from({ length: 3 }, () =>
      randomTable(rand, 1 + Math.floor(rand() * 64), Math.floor(rand() * 40) - 20),
    );
    const n = Math.floor(rand() * 3000);
    const which = Array.from({ length: n }, () => Math.floor(rand() * 3));
    const values = which.map((w) => {
      const tb = tables[w]!;
      return rand() < 0.05
        ? Math.floor((rand() - 0.5) * 2 ** 28)
        : tb.offset + Math.floor(rand() * (tb.cdf.length - 2));
    });
    const bits = ransEncode(values, tables, (i) => which[i]!, stream);
    t.deepEqual([...ransDecode(bits, n, tables, (i) => which[i]!, undefined, stream)], values);
  }
});

test('a skewed source codes close to its entropy', (t) => {
  // p = (0.9, 0.05, 0.05 - 1/2^16 escape): ~0.57 bit per symbol
  const cdf = Uint32Array.from([0, 58982, 62259, 65535, 65536]);
  const tables = [{ offset: 0, cdf }];
  const rand = prng(5);
  const values = Array.from({ length: 20000 }, () => {
    const r = rand();
    return r < 0.9 ? 0 : r < 0.95 ? 1 : 2;
  });
  const bits = ransEncode(values, tables, () => 0);
  const old = ransEncode(values, tables, () => 0, 1);
  t.true(bits.length < old.length, `stream 2 ${bits.length} B, stream 1 ${old.length} B`);
  const entropyBytes = (20000 * (0.9 * -Math.log2(0.9) + 2 * 0.05 * -Math.log2(0.05))) / 8;
  t.true(
    bits.length < entropyBytes * 1.01 + 8,
    `${bits.length} B vs entropy ${entropyBytes.toFixed(0)} B`,
  );
});

const decodeCase = (c: Case, bytes: Uint8Array, count = c.values.length) =>
  ransDecode(bytes, count, tablesOf(c), (i) => c.tableIndex[i] ?? 0, undefined, c.stream);

test('every truncation of a stream 1 stream is reported, never mis-decoded', (t) => {
  const c = load('python.json').find((x) => x.name === 'escapes-both-sides')!;
  const full = Buffer.from(c.bitstream, 'hex');
  for (let len = 0; len < full.length; len++) {
    t.throws(() => decodeCase(c, full.subarray(0, len)), { instanceOf: CodecError });
  }
  // and trailing garbage is not silently ignored
  const longer = Buffer.concat([full, Buffer.from([0])]);
  t.throws(() => decodeCase(c, longer), { instanceOf: CodecError });
});

test('a truncated stream 2 stream never decodes to its values', (t) => {
  // stream 2 never reads past the end: a cut stream decodes to the end, and the state
  // check reports it (or, by chance, the values differ)
  for (const name of ['escapes-both-sides/stream2', 'laplace-in-range/stream2']) {
    const c = load('python.json').find((x) => x.name === name)!;
    const full = Buffer.from(c.bitstream, 'hex');
    let reported = 0;
    for (let len = 0; len < full.length; len++) {
      try {
        t.notDeepEqual(
          [...decodeCase(c, full.subarray(0, len))],
          c.values,
          `${name} cut at ${len}`,
        );
      } catch (e) {
        t.true(e instanceof CodecError, String(e));
        reported++;
      }
    }
    t.true(reported >= full.length - 2, `${name}: ${reported} of ${full.length} cuts reported`);
    t.throws(() => decodeCase(c, Buffer.concat([full, Buffer.from([0])])), {
      instanceOf: CodecError,
    });
  }
});

test('bit flips and random bytes end in a CodecError, in bounded time', (t) => {
  const rand = prng(9);
  // Coded symbols: the final-state check catches every single bit flip tried here.
  for (const name of ['laplace-in-range', 'eight-bit', 'laplace-in-range/stream2']) {
    const c = load('python.json').find((x) => x.name === name)!;
    const full = Buffer.from(c.bitstream, 'hex');
    for (let k = 0; k < 300; k++) {
      const bad = Buffer.from(full);
      bad[Math.floor(rand() * bad.length)]! ^= 1 << Math.floor(rand() * 8);
      t.throws(() => decodeCase(c, bad), { instanceOf: CodecError });
    }
  }
  // Bypass chunks are raw bits without redundancy: a flip there can decode to other
  // values (transport integrity, TCP/TLS, covers that); it must still never crash.
  const c = load('python.json').find((x) => x.name === 'mixed-tables')!;
  const tables = tablesOf(c);
  const full = Buffer.from(c.bitstream, 'hex');
  let detected = 0;
  for (let k = 0; k < 300; k++) {
    const bad = Buffer.from(full);
    bad[Math.floor(rand() * bad.length)]! ^= 1 << Math.floor(rand() * 8);
    try {
      ransDecode(bad, c.values.length, tables, (i) => c.tableIndex[i]!);
    } catch (e) {
      t.true(e instanceof CodecError, String(e));
      detected++;
    }
  }
  t.true(detected > 200, `${detected} of 300 flips detected`);
  for (let k = 0; k < 200; k++) {
    const junk = Buffer.from(
      Array.from({ length: Math.floor(rand() * 64) }, () => Math.floor(rand() * 256)),
    );
    // 1e6 symbols requested from a few bytes: must fail fast, not spin
    t.throws(() => ransDecode(junk, 1_000_000, tables, () => 0, undefined, 1), {
      instanceOf: CodecError,
    });
    // stream 2 reads no further than the end: the work is the symbol count's, no more
    try {
      t.is(ransDecode(junk, 4096, tables, () => 0).length, 4096);
    } catch (e) {
      t.true(e instanceof CodecError, String(e));
    }
  }
});

test('bad tables and unencodable values are refused', (t) => {
  t.throws(() => checkTable({ offset: 0, cdf: Uint32Array.from([0, 65536]) }), {
    instanceOf: CodecError,
  });
  t.throws(() => checkTable({ offset: 0, cdf: Uint32Array.from([0, 5, 5, 65536]) }), {
    message: /strictly increasing/,
  });
  t.throws(() => checkTable({ offset: 0, cdf: Uint32Array.from([1, 5, 65536]) }), {
    instanceOf: CodecError,
  });
  const tables = [{ offset: 0, cdf: Uint32Array.from([0, 30000, 65536]) }];
  t.throws(() => ransEncode([0.5], tables, () => 0), { instanceOf: RangeError });
  t.throws(() => ransEncode([2 ** 31], tables, () => 0), { instanceOf: RangeError });
  t.throws(() => ransEncode([0], tables, () => 3), { instanceOf: RangeError });
});
