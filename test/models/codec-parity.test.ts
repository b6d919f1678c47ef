/**
 * Learned codecs, Python vs TypeScript: the toolkit's smoke run (synthetic data, tiny
 * networks, all three methods) exports bundles with PyTorch fixtures; here the
 * TypeScript side loads them and must agree: device network symbols (onnxruntime vs
 * PyTorch), bitstreams byte for byte (rans.ts vs rans.py), edge network logits.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../device-agent/agent.js';
import { startEdge } from '../../edge-broker/edge.js';
import { onnxEngine } from '../../core/engine/onnx.js';
import { decodeImage, preprocess } from '../../core/image/image.js';
import { loadBundle } from '../../core/model/bundle.js';
import { PROJECT_ROOT, SAMPLE_DIR } from '../../core/paths.js';
import { numel } from '../../core/tensor.js';

const PYTHON = process.env.SPLITFLEET_PYTHON ?? '/usr/bin/python3';

interface Case {
  point: number;
  keep: number;
  image: string;
  symbols: number[];
  payload: string;
  logits: number[];
}

let dir = '';
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sf-codec-parity-'));
  const r = spawnSync(PYTHON, ['-W', 'ignore', '-m', 'splitfleet_models.smoke', '--out', dir], {
    cwd: join(PROJECT_ROOT, 'models'),
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (r.status !== 0) throw new Error(`smoke run failed: ${r.stderr || String(r.error)}`);
});
test.after.always(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

for (const method of ['bottlenetpp', 'aecnn', 'frankensplit']) {
  test.serial(`${method}: symbols, bitstreams and logits match PyTorch`, async (t) => {
    const b = await loadBundle(join(dir, 'zoo', `tiny-${method}-v1`));
    const m = b.manifest;
    if (m.kind !== 'codec' || !b.codec) return t.fail('not a codec bundle');
    const codec = b.codec;
    const ref = JSON.parse(
      await readFile(join(dir, 'fixtures', `tiny-${method}-v1`, 'reference.json'), 'utf8'),
    ) as { cases: Case[] };
    t.true(ref.cases.length >= 4);
    let symbolMismatch = 0;
    let symbols = 0;
    let logitDiff = 0;
    for (const c of ref.cases) {
      const p = m.codec.points.find((x) => x.index === c.point)!;
      const n = numel(p.symbolShape);
      // bitstream: the TypeScript coder on PyTorch's symbols makes the same bytes
      const full = new Float32Array(n);
      full.set(c.symbols);
      const payload = codec.encode({ data: full, shape: p.symbolShape }, p.index);
      t.is(Buffer.from(payload).toString('hex'), c.payload, `${c.image} point ${p.index}`);
      const back = codec.decode(Buffer.from(c.payload, 'hex'), p.symbolShape, p.index);
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
    t.log(`${symbolMismatch}/${symbols} symbols differ; max |logit diff| ${logitDiff.toExponential(2)}`);
    // rounding x.5 can fall either way between two float implementations: rare
    t.true(symbolMismatch <= Math.ceil(symbols * 0.01), `${symbolMismatch} of ${symbols} symbols`);
    t.true(logitDiff < 1e-3, `max logit diff ${logitDiff}`);
  });
}

test.serial('learned bundles run the whole path over MQTT, frames of each point answered', async (t) => {
  const bundles = await Promise.all(
    ['bottlenetpp', 'aecnn', 'frankensplit'].map((m) => loadBundle(join(dir, 'zoo', `tiny-${m}-v${1}`))),
  );
  // the three tiny bundles share model id 9: serve them one at a time
  for (const b of bundles) {
    const edge = await startEdge({ bundles: [b], port: 0, wsPort: null, workers: 1, edgeId: 'e' });
    try {
      const m = b.manifest;
      if (m.kind !== 'codec') return t.fail();
      for (const p of m.codec.points) {
        const a = new Agent({
          url: edge.url,
          fleet: 'parity',
          deviceId: `dev-${m.codec.method}`,
          bundle: b,
          codec: m.codec.method,
          point: p.index,
          source: { source: 'sample', limit: 6 },
          fps: 0,
          resultTimeoutMs: 20_000,
        });
        await a.start();
        const s = await a.run();
        await a.stop();
        t.is(s.results, 6, `${m.codec.method} point ${p.index}`);
        t.is(s.errors, 0);
      }
      // a frame for a point the bundle does not have is answered with an error
      const bad = new Agent({
        url: edge.url,
        fleet: 'parity',
        deviceId: 'dev-bad',
        bundle: b,
        codec: 'split-q',
        point: 0,
        source: { source: 'sample', limit: 1 },
        fps: 0,
      });
      await t.throwsAsync(bad.start(), { message: /is a .* codec, not split-q/ });
    } finally {
      await edge.close();
    }
  }
});
