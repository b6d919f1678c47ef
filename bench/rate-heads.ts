/**
 * Device head time of zoo bundles, natively and as arm64 under qemu-user: the bundle's
 * head (ONNX) in onnxruntime-node with the device's settings (core/engine/onnx.ts: one
 * thread, sequential, batch 1), median of `--runs` runs after 3 warm-up runs, on one
 * normalized input of the bundle's size and layout. The arm64 run is Debian's arm64
 * Node.js with onnxruntime-node's own arm64 binary, emulated by qemu-aarch64 on this
 * host: it proves the head runs as arm64 code and gives emulated times, which are no
 * Raspberry Pi's times.
 *
 *   node --import tsx bench/rate-heads.ts --zoo DIR --models a,b [--runs 20]
 *        [--arm64-runs 5] [--no-arm64] [--json]
 *
 * The arm64 sysroot is the one scripts/arm64-agent.sh prepares (`--prepare-only`) in
 * .cache/arm64/ (or $ARM64_DIR).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { onnxEngine } from '../core/engine/onnx.js';
import { PROJECT_ROOT } from '../core/paths.js';
import { resolveBundle } from '../core/model/zoo.js';
import { percentile, round } from '../core/util/stats.js';

interface HeadTime {
  model: string;
  split: string;
  input: number[];
  headMacs: number;
  native: { runs: number; medianMs: number; p90Ms: number };
  arm64: { runs: number; medianMs: number; p90Ms: number; arch: string } | null;
}

/** One input of `shape`: a fixed pseudo-random pattern in the normalized range. */
function input(shape: readonly number[]): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const x = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    x[i] = (s / 2 ** 32) * 4 - 2;
  }
  return x;
}

/** What the emulated node runs: the same session options as core/engine/onnx.ts. */
const ARM64_SCRIPT = `
const ort = require(process.argv[1]);
const [file, shapeText, runsText] = process.argv.slice(2);
const shape = JSON.parse(shapeText);
const runs = Number(runsText);
(async () => {
  const s = await ort.InferenceSession.create(file, { intraOpNumThreads: 1, interOpNumThreads: 1,
    executionMode: 'sequential', graphOptimizationLevel: 'all', executionProviders: ['cpu'] });
  const n = shape.reduce((a, b) => a * b, 1);
  const x = new Float32Array(n);
  let r = 12345;
  for (let i = 0; i < n; i++) { r = (Math.imul(r, 1664525) + 1013904223) >>> 0; x[i] = (r / 2 ** 32) * 4 - 2; }
  const feeds = { [s.inputNames[0]]: new ort.Tensor('float32', x, shape) };
  const ms = [];
  for (let i = 0; i < 3 + runs; i++) {
    const t0 = performance.now();
    await s.run(feeds);
    if (i >= 3) ms.push(performance.now() - t0);
  }
  console.log(JSON.stringify({ arch: process.arch, ms }));
})().catch((e) => { console.error(String(e)); process.exit(1); });
`;

function arm64Run(
  file: string,
  shape: number[],
  runs: number,
): Promise<{ arch: string; ms: number[] }> {
  const dir = process.env.ARM64_DIR ?? join(PROJECT_ROOT, '.cache', 'arm64');
  const sys = join(dir, 'sysroot');
  const ort = join(dir, 'app', 'node_modules', 'onnxruntime-node');
  if (!existsSync(join(sys, 'usr', 'bin', 'node')) || !existsSync(ort)) {
    return Promise.reject(
      new Error(`no arm64 sysroot in ${dir}: run scripts/arm64-agent.sh --prepare-only first`),
    );
  }
  return new Promise((resolve, reject) => {
    const qemu = process.env.QEMU_AARCH64 ?? 'qemu-aarch64';
    const args = ['-L', sys, join(sys, 'usr', 'bin', 'node'), '-e', ARM64_SCRIPT, ort, file];
    const p = spawn(qemu, [...args, JSON.stringify(shape), String(runs)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.once('error', (e) => reject(new Error(`${qemu}: ${e.message}`)));
    p.once('close', (code) => {
      if (code !== 0) {
        reject(new Error(`arm64 run of ${file} failed (${code}): ${err.trim()}`));
        return;
      }
      try {
        const r = JSON.parse(out.trim().split('\n').at(-1) ?? '') as unknown;
        const { arch, ms } = r as { arch?: unknown; ms?: unknown };
        if (
          typeof arch !== 'string' ||
          !Array.isArray(ms) ||
          !ms.every((v) => typeof v === 'number')
        )
          throw new Error('unexpected output');
        resolve({ arch, ms: ms as number[] });
      } catch (e) {
        reject(new Error(`arm64 run of ${file}: ${(e as Error).message}: ${out.slice(-200)}`));
      }
    });
  });
}

const stats = (ms: number[]) => ({
  runs: ms.length,
  medianMs: round(percentile(ms, 50), 2),
  p90Ms: round(percentile(ms, 90), 2),
});

async function timeHead(name: string, runs: number, arm64Runs: number): Promise<HeadTime> {
  const b = await resolveBundle(name, { part: 'device' });
  const m = b.manifest;
  if (m.kind !== 'backbone') throw new Error(`${name} is a ${m.kind} bundle, not a backbone`);
  const [h, w] = m.preprocessing.size;
  const shape = m.preprocessing.layout === 'NHWC' ? [1, h, w, 3] : [1, 3, h, w];
  const file = b.file('head');
  const s = await onnxEngine.load(file, { threads: 1 });
  const x = { data: input(shape), shape };
  const ms: number[] = [];
  for (let i = 0; i < 3 + runs; i++) {
    const t0 = performance.now();
    await s.run(x);
    if (i >= 3) ms.push(performance.now() - t0);
  }
  await s.close();
  const emulated = arm64Runs > 0 ? await arm64Run(file, shape, arm64Runs) : null;
  return {
    model: `${m.name}@${m.version}`,
    split: `${m.split.point} [${m.split.tensorShape.join('x')}]`,
    input: shape,
    headMacs: m.split.headMacs,
    native: stats(ms),
    arm64: emulated ? { ...stats(emulated.ms), arch: emulated.arch } : null,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      zoo: { type: 'string' },
      models: { type: 'string' },
      runs: { type: 'string', default: '20' },
      'arm64-runs': { type: 'string', default: '5' },
      'no-arm64': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  if (values.zoo) process.env.SPLITFLEET_ZOO = values.zoo;
  if (!values.models) throw new Error('--models a,b: the bundles to time');
  const runs = Number(values.runs);
  const arm64Runs = values['no-arm64'] ? 0 : Number(values['arm64-runs']);
  if (!(runs >= 1) || !(arm64Runs >= 0)) throw new Error('--runs >= 1, --arm64-runs >= 0');
  const rows: HeadTime[] = [];
  for (const name of values.models.split(',')) rows.push(await timeHead(name, runs, arm64Runs));
  for (const r of rows) {
    process.stdout.write(
      `${r.model}: head to ${r.split}, ${(r.headMacs / 1e6).toFixed(1)} MMACs, input ${r.input.join('x')}: ` +
        `native ${r.native.medianMs} ms (p90 ${r.native.p90Ms}, ${r.native.runs} runs)` +
        (r.arm64
          ? `; ${r.arm64.arch} under qemu ${r.arm64.medianMs} ms (p90 ${r.arm64.p90Ms}, ${r.arm64.runs} runs)`
          : '') +
        '\n',
    );
  }
  if (values.json) process.stdout.write(JSON.stringify({ rows }) + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`rate-heads: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
