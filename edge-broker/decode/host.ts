/**
 * A decoder process of the edge's pool (pool.ts), started with child_process.fork: loads
 * the served bundles with its own sessions, then decodes the batches the pool sends it
 * and answers each with one result or one failure per frame, in order. Whatever goes
 * wrong in here (an exception, a native abort in onnxruntime, running out of heap) ends
 * this process only; the pool answers or re-queues its frames and starts another.
 *
 * A `preload` module (PoolOptions.preload) is imported before the networks load; when it
 * exports a function `beforeBatch(jobs)`, that is called with every batch before it is
 * decoded (instrumentation, fault drills).
 */
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { onnxEngine } from '../../core/engine/onnx.js';
import { loadBundle, type Bundle } from '../../core/model/load.js';
import { background, log } from '../../core/util/log.js';
import { DecodeFailure, FrameDecoder, type DecodeJob } from './decoder.js';
import { parseInit, parseRequest, type HostAnswer, type HostInit } from './protocol.js';

if (!process.send) throw new Error('host.ts runs as a decoder process of the decoder pool');

const send = (m: HostAnswer) => {
  // the pool is gone when the channel is closed: nothing to answer to
  if (process.connected) process.send?.(m);
};

// the edge outlives its decoders: when memory runs out, the kernel picks this process
try {
  writeFileSync('/proc/self/oom_score_adj', '1000');
} catch {
  // not Linux, or not allowed: the heap limit still holds
}

// the pool gone (the edge stopped or was killed): nothing left to decode for
process.on('disconnect', () => process.exit(0));

type BeforeBatch = (jobs: readonly DecodeJob[]) => unknown;

async function preloaded(url: string | null): Promise<BeforeBatch | null> {
  if (!url) return null;
  const m: Record<string, unknown> = await import(
    /^[a-z][a-z0-9+.-]+:/i.test(url) ? url : pathToFileURL(url).href
  );
  const f = m.beforeBatch;
  return typeof f === 'function' ? (jobs) => f(jobs) : null;
}

async function serve(init: HostInit): Promise<void> {
  let decoder: FrameDecoder;
  let beforeBatch: BeforeBatch | null;
  try {
    beforeBatch = await preloaded(init.preload);
    const bundles: Bundle[] = [];
    for (const dir of init.bundleDirs) bundles.push(await loadBundle(dir, 'decoder'));
    decoder = await FrameDecoder.create(bundles, onnxEngine, {
      threads: init.threads,
      edgeId: init.edgeId,
    });
  } catch (e) {
    send({ type: 'init-error', message: e instanceof Error ? e.message : String(e) });
    return;
  }
  const run = async (id: number, jobs: DecodeJob[]) => {
    try {
      await beforeBatch?.(jobs);
      const out = await decoder.runBatch(jobs);
      send({
        type: 'done',
        id,
        out: out.map((r) =>
          r instanceof DecodeFailure
            ? { error: { code: r.code, message: r.message, frameId: r.frameId } }
            : { result: r },
        ),
      });
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      send({
        type: 'done',
        id,
        out: jobs.map((j) => ({
          error: { code: 'inference-failed', message, frameId: j.frame.frameId },
        })),
      });
    }
  };
  process.on('message', (raw: unknown) => {
    const m = parseRequest(raw);
    if (m?.type === 'batch') background(run(m.id, m.jobs), 'decoder batch');
    else if (m?.type === 'close') {
      decoder.close().then(
        () => process.exit(0),
        () => process.exit(0),
      );
    }
  });
  send({ type: 'ready' });
}

const init = parseInit(process.argv[2]);
if (!init) {
  send({ type: 'init-error', message: 'no valid start-up argument' });
} else {
  log.debug({ decoder: init.index, pid: process.pid }, 'decoder process up');
  background(serve(init), 'decoder process');
}
