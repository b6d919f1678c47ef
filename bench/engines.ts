/**
 * `splitfleet bench engines [--json]`: the device encoder (head + codec encode, the
 * agent's HeadPipeline, one image per frame as on a device) on every inference engine
 * that runs here (onnx, tfjs-wasm, tfjs-node when installed) at 1 and 2 threads, on the
 * shipped sample.
 *
 * Each engine x threads runs in its own child process, so its memory is its own and an
 * engine whose threads are fixed when it starts (tfjs) gets the count asked for. Per
 * configuration: encoder ms per frame (p50, mean; head alone too), the process's resident
 * memory and V8 heap after the frames (and the growth over the process before the engine
 * was loaded), the threads the engine reports, and `maxAbsDiff`: the largest |head output
 * - onnx's head output at 1 thread| over the first frames' images (0 for onnx itself;
 * for a learned codec the outputs are integer symbols and `differing` counts those that
 * differ).
 */
import { fork } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HeadPipeline } from '../device-agent/pipeline.js';
import type { ConcreteEngine } from '../core/engine/select.js';
import { readSamples, type Sample } from '../core/data/cifar.js';
import { decodeImage, preprocess } from '../core/image/image.js';
import { resolveBundle } from '../core/model/bundle.js';
import { SAMPLE_DIR } from '../core/paths.js';
import { percentile, round } from '../core/util/stats.js';

export interface EnginesOptions {
  model: string;
  codec: string;
  point: number;
  /** Frames timed per configuration (after `warmup` untimed ones). */
  frames: number;
  warmup: number;
  threads: number[];
  /** Frames whose head outputs are compared with onnx's. */
  compare: number;
  log?: (line: string) => void;
}

export interface EngineRow {
  engine: ConcreteEngine;
  threads: number;
  /** Threads the engine reports running with (tfjs-wasm in Node: 1). */
  threadsEffective: number;
  available: boolean;
  /** Why the engine does not run here. */
  reason?: string;
  frames?: number;
  encoderMs?: { p50: number; mean: number };
  headMs?: { p50: number; mean: number };
  memoryMiB?: { rss: number; heapUsed: number; external: number; rssGrowth: number };
  maxAbsDiff?: number | null;
  differing?: number | null;
  compared?: number;
}

export interface EnginesReport {
  model: string;
  codec: string;
  point: number;
  /** What the head outputs: float features (a backbone) or integer symbols (a learned codec). */
  outputs: 'features' | 'symbols';
  machine: string;
  rows: EngineRow[];
}

const ENGINES: ConcreteEngine[] = ['onnx', 'tfjs-wasm', 'tfjs-node'];
const CHILD_ENV = 'SPLITFLEET_BENCH_ENGINES_CHILD';

interface ChildJob {
  engine: ConcreteEngine;
  threads: number;
  opts: EnginesOptions;
  /** Where the child writes its compared head outputs (float32). */
  outFile: string;
}

const mib = (b: number) => round(b / 2 ** 20, 1);
const stats = (v: number[]) => ({
  p50: round(percentile(v, 50), 3),
  mean: round(v.reduce((a, b) => a + b, 0) / v.length, 3),
});

/** One configuration, in this (child) process. */
async function runChild(job: ChildJob): Promise<EngineRow> {
  const { opts, engine: name, threads } = job;
  const samples: Sample[] = [];
  for await (const s of readSamples(SAMPLE_DIR, { limit: opts.frames + opts.warmup })) {
    samples.push(s);
  }
  const bundle = await resolveBundle(opts.model, { codec: opts.codec });
  const before = process.memoryUsage().rss;
  const { concreteEngine } = await import('../core/engine/select.js');
  let engine;
  try {
    engine = await concreteEngine(name, threads);
  } catch (e) {
    return {
      engine: name,
      threads,
      threadsEffective: 0,
      available: false,
      reason: (e as Error).message,
    };
  }
  let threadsEffective = threads;
  if (name !== 'onnx')
    threadsEffective = await (await import('../core/engine/tfjs.js')).tfjsThreads(name);
  const pipe = await HeadPipeline.create(bundle, opts.codec, opts.point, { engine, threads });
  const enc: number[] = [];
  const head: number[] = [];
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i]!;
    // decoding the JPEG is the source's work, not the encoder's: decode first
    const px = { ...s, rgb: await pipe.pixels(s) };
    const r = await pipe.encode(px, i);
    if (i >= opts.warmup) {
      enc.push(r.headMs + r.encodeMs);
      head.push(r.headMs);
    }
  }
  const mem = process.memoryUsage();
  await pipe.close();
  // head outputs for the comparison, the same images for every configuration
  const { loadNetwork } = await import('../core/engine/select.js');
  const role =
    bundle.manifest.kind === 'codec'
      ? bundle.manifest.codec.points.find((p) => p.index === opts.point)!.head
      : 'head';
  const { session } = await loadNetwork(engine, bundle, role, { threads });
  const outs: Float32Array[] = [];
  for (const s of samples.slice(0, opts.compare)) {
    const x = preprocess(await decodeImage(s.bytes!), bundle.manifest.preprocessing);
    outs.push((await session.run(x)).data.slice());
  }
  await session.close();
  const all = new Float32Array(outs.reduce((a, o) => a + o.length, 0));
  let off = 0;
  for (const o of outs) {
    all.set(o, off);
    off += o.length;
  }
  await writeFile(job.outFile, Buffer.from(all.buffer));
  return {
    engine: name,
    threads,
    threadsEffective,
    available: true,
    frames: enc.length,
    encoderMs: stats(enc),
    headMs: stats(head),
    memoryMiB: {
      rss: mib(mem.rss),
      heapUsed: mib(mem.heapUsed),
      external: mib(mem.external),
      rssGrowth: mib(mem.rss - before),
    },
  };
}

function forkJob(job: ChildJob): Promise<EngineRow> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), [], {
      env: {
        ...process.env,
        [CHILD_ENV]: JSON.stringify({ ...job, opts: { ...job.opts, log: undefined } }),
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let row: EngineRow | undefined;
    child.on('message', (m) => (row = m as EngineRow));
    child.on('error', reject);
    child.on('exit', (code) =>
      row ? resolve(row) : reject(new Error(`${job.engine} x${job.threads}: child exited ${code}`)),
    );
  });
}

async function readF32(file: string): Promise<Float32Array | null> {
  const b = await readFile(file).catch(() => null);
  return b ? new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)) : null;
}

export async function benchEngines(opts: EnginesOptions): Promise<EnginesReport> {
  const kind = (await resolveBundle(opts.model, { codec: opts.codec })).manifest.kind;
  const dir = await mkdtemp(join(tmpdir(), 'sf-bench-engines-'));
  const rows: EngineRow[] = [];
  try {
    let ref: Float32Array | null = null;
    for (const engine of ENGINES) {
      for (const threads of opts.threads) {
        const outFile = join(dir, `${engine}-${threads}.f32`);
        const row = await forkJob({ engine, threads, opts, outFile });
        if (row.available) {
          const out = await readF32(outFile);
          if (engine === 'onnx' && threads === opts.threads[0]) ref = out;
          let max: number | null = null;
          let differing: number | null = null;
          if (ref && out && ref.length === out.length) {
            max = 0;
            differing = 0;
            for (let i = 0; i < ref.length; i++) {
              const d = Math.abs(ref[i]! - out[i]!);
              if (d > max) max = d;
              if (d > 0) differing++;
            }
          }
          row.maxAbsDiff = max;
          row.differing = differing;
          row.compared = out?.length ?? 0;
        }
        rows.push(row);
        opts.log?.(
          row.available
            ? `${engine} x${threads}: encoder p50 ${row.encoderMs!.p50} ms, RSS ${row.memoryMiB!.rss} MiB, maxAbsDiff ${row.maxAbsDiff}`
            : `${engine}: not available (${row.reason})`,
        );
        if (!row.available) break; // the other thread counts would say the same
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return {
    model: opts.model,
    codec: opts.codec,
    point: opts.point,
    outputs: kind === 'codec' ? 'symbols' : 'features',
    machine: `${process.platform} ${process.arch}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), Node ${process.version}`,
    rows,
  };
}

export function enginesTable(r: EnginesReport): string {
  const lines = [
    `encoder = head + codec encode, ${r.model} ${r.codec} point ${r.point}, one image per frame; ${r.machine}`,
    'engine      threads  ran  encoder p50/mean ms  head p50 ms  RSS MiB (growth)  heap MiB  maxAbsDiff vs onnx',
  ];
  for (const w of r.rows) {
    if (!w.available) {
      lines.push(`${w.engine.padEnd(11)} not available: ${w.reason}`);
      continue;
    }
    lines.push(
      [
        w.engine.padEnd(11),
        String(w.threads).padStart(7),
        String(w.threadsEffective).padStart(4),
        `${w.encoderMs!.p50} / ${w.encoderMs!.mean}`.padStart(20),
        String(w.headMs!.p50).padStart(12),
        `${w.memoryMiB!.rss} (${w.memoryMiB!.rssGrowth})`.padStart(17),
        String(w.memoryMiB!.heapUsed).padStart(9),
        `${w.maxAbsDiff === null ? '-' : w.maxAbsDiff!.toExponential(2)}${r.outputs === 'symbols' ? ` (${w.differing}/${w.compared} differ)` : ''}`.padStart(
          19,
        ),
      ].join(' '),
    );
  }
  return lines.join('\n') + '\n';
}

if (process.env[CHILD_ENV] && process.send) {
  const job = JSON.parse(process.env[CHILD_ENV]) as ChildJob;
  try {
    const row = await runChild(job);
    process.send(row, () => process.exit(0));
  } catch (e) {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  }
}
