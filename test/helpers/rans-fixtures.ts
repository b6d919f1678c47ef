/**
 * Golden rANS fixtures made by the TypeScript coder (the reverse direction of the
 * Python-made test/fixtures/rans/python.json): both test suites decode and re-encode
 * both files byte for byte, each case in every stream layout.
 *
 *   npx tsx test/helpers/rans-fixtures.ts     # writes test/fixtures/rans/typescript.json
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PROB_BITS, RANS_STREAMS, ransEncode, type CdfTable } from '../../core/codec/rans.js';

/** Deterministic 32-bit PRNG (mulberry32) so the cases never change. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random valid table: n symbols + escape, every frequency >= 1, total 2^16. */
export function randomTable(rand: () => number, n: number, offset: number): CdfTable {
  const total = 1 << PROB_BITS;
  const w = Array.from({ length: n + 1 }, () => rand() ** 3 + 1e-9);
  const sum = w.reduce((a, b) => a + b, 0);
  const freq = w.map((x) => 1 + Math.floor((x / sum) * (total - n - 1)));
  freq[0]! += total - freq.reduce((a, b) => a + b, 0);
  const cdf = new Uint32Array(n + 2);
  for (let i = 0; i < freq.length; i++) cdf[i + 1] = cdf[i]! + freq[i]!;
  return { offset, cdf };
}

export function typescriptCases(): object[] {
  const rand = prng(20261123);
  const cases: object[] = [];
  for (let c = 0; c < 6; c++) {
    const tables = Array.from({ length: 1 + c }, (_, i) =>
      randomTable(
        rand,
        1 + Math.floor(rand() * (c === 5 ? 300 : 40)),
        -Math.floor(rand() * 20) + i,
      ),
    );
    const len = c === 0 ? 1 : Math.floor(rand() * 800);
    const tableIndex = Array.from({ length: len }, () => Math.floor(rand() * tables.length));
    const values = tableIndex.map((t) => {
      const tb = tables[t]!;
      const n = tb.cdf.length - 2;
      const r = rand();
      if (r < 0.03) return tb.offset - 1 - Math.floor(rand() * 100000);
      if (r < 0.06) return tb.offset + n + Math.floor(rand() * 1000);
      return tb.offset + Math.floor(rand() * n);
    });
    for (const stream of RANS_STREAMS) {
      const bits = ransEncode(values, tables, (i) => tableIndex[i]!, stream);
      cases.push({
        name: `ts-random-${c}${stream === 1 ? '' : `/stream${stream}`}`,
        stream,
        tables: tables.map((t) => ({ offset: t.offset, cdf: [...t.cdf] })),
        tableIndex,
        values,
        bitstream: Buffer.from(bits).toString('hex'),
      });
    }
  }
  return cases;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = join(
    fileURLToPath(new URL('.', import.meta.url)),
    '..',
    'fixtures',
    'rans',
    'typescript.json',
  );
  const doc = {
    maker: 'test/helpers/rans-fixtures.ts',
    probBits: PROB_BITS,
    cases: typescriptCases(),
  };
  writeFileSync(file, JSON.stringify(doc) + '\n');
  console.log(`wrote ${file}: ${doc.cases.length} cases`);
}
