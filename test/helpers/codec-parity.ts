/**
 * Parity of one learned-codec bundle with the PyTorch fixtures export_codec.py wrote
 * beside it: bitstreams byte for byte (rans.ts vs rans.py), device network symbols
 * (onnxruntime vs PyTorch) and edge network logits. Used for the smoke run's tiny
 * bundles and for the shipped ones.
 */
import type { ExecutionContext } from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { onnxEngine } from '../../core/engine/onnx.js';
import { decodeImage, preprocess } from '../../core/image/image.js';
import { loadBundle } from '../../core/model/load.js';
import { SAMPLE_DIR } from '../../core/paths.js';
import { numel } from '../../core/tensor.js';

interface Case {
  point: number;
  keep: number;
  image: string;
  symbols: number[];
  payload: string;
  logits: number[];
  /** The payload's bitstream version (rANS stream layout); absent in fixtures made
   * before the layout had a number: 1. */
  stream?: number;
}

export async function checkCodecParity(
  t: ExecutionContext,
  bundleDir: string,
  fixtureDir: string,
): Promise<void> {
  const b = await loadBundle(bundleDir);
  const m = b.manifest;
  if (m.kind !== 'codec' || !b.codec) return t.fail('not a codec bundle');
  const codec = b.codec;
  const points = m.codec.points;
  const ref = JSON.parse(await readFile(join(fixtureDir, 'reference.json'), 'utf8')) as {
    cases: Case[];
  };
  t.true(ref.cases.length >= 4);
  let symbolMismatch = 0;
  let symbols = 0;
  let logitDiff = 0;
  for (const c of ref.cases) {
    const p = points.find((x) => x.index === c.point)!;
    const n = numel(p.symbolShape);
    // bitstream: the TypeScript coder on PyTorch's symbols makes the same bytes
    const full = new Float32Array(n);
    full.set(c.symbols);
    const version = m.codec.coding === 'rans' ? (c.stream ?? 1) : codec.version;
    const payload = codec.encode({ data: full, shape: p.symbolShape }, p.index, version);
    t.is(Buffer.from(payload).toString('hex'), c.payload, `${c.image} point ${p.index}`);
    const back = codec.decode(Buffer.from(c.payload, 'hex'), p.symbolShape, p.index, version);
    t.deepEqual([...back.data.subarray(0, c.symbols.length)], c.symbols);
    t.true(back.data.subarray(c.symbols.length).every((v) => v === -1));

    // device network: onnxruntime vs PyTorch symbols
    const head = await onnxEngine.load(b.file(p.head), { threads: 1 });
    const img = await decodeImage(await readFile(join(SAMPLE_DIR, c.image)));
    const sym = await head.run(preprocess(img, m.preprocessing));
    await head.close();
    for (let i = 0; i < c.symbols.length; i++) {
      symbols++;
      if (sym.data[i] !== c.symbols[i]) symbolMismatch++;
    }

    // edge network on the decoded symbols
    const tail = await onnxEngine.load(b.file(p.tail), { threads: 1 });
    const logits = await tail.run({ data: back.data, shape: [1, ...p.symbolShape] });
    await tail.close();
    c.logits.forEach((v, j) => (logitDiff = Math.max(logitDiff, Math.abs(v - logits.data[j]!))));
  }
  t.log(
    `${symbolMismatch}/${symbols} symbols differ; max |logit diff| ${logitDiff.toExponential(2)}`,
  );
  // rounding x.5 can fall either way between two float implementations: rare
  t.true(symbolMismatch <= Math.ceil(symbols * 0.01), `${symbolMismatch} of ${symbols} symbols`);
  t.true(logitDiff < 1e-3, `max logit diff ${logitDiff}`);
}
