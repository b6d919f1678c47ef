/**
 * A decoder thread (worker_threads) of the edge's pool (pool.ts): loads the served
 * bundles with its own tail sessions, then decodes the batches the pool sends it and
 * answers each with one result or one failure per frame, in order.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { onnxEngine } from '../../core/engine/onnx.js';
import { loadBundle } from '../../core/model/load.js';
import { background } from '../../core/util/log.js';
import { DecodeFailure, FrameDecoder } from './decoder.js';
import type { ThreadAnswer, ThreadInit, ThreadRequest } from './pool.js';

const port = parentPort;
if (!port) throw new Error('decoder-thread.ts runs as a worker thread of the decoder pool');
const init = workerData as ThreadInit;
const send = (m: ThreadAnswer) => port.postMessage(m);

try {
  const bundles = [];
  for (const dir of init.bundleDirs) bundles.push(await loadBundle(dir, 'decoder'));
  const decoder = await FrameDecoder.create(bundles, onnxEngine, {
    threads: init.threads,
    edgeId: init.edgeId,
  });
  let crash = false;
  port.on('message', (m: ThreadRequest) => {
    if (m.type === 'crash') {
      crash = true;
      return;
    }
    if (crash && m.type === 'batch') throw new Error('decoder thread crash drill');
    if (m.type === 'close') {
      decoder.close().then(
        () => port.close(),
        () => port.close(),
      );
      return;
    }
    background(
      decoder.runBatch(m.jobs).then(
        (out) =>
          send({
            type: 'done',
            id: m.id,
            out: out.map((r) =>
              r instanceof DecodeFailure
                ? { error: { code: r.code, message: r.message, frameId: r.frameId } }
                : { result: r },
            ),
          }),
        (e: unknown) =>
          send({
            type: 'done',
            id: m.id,
            out: m.jobs.map((j) => ({
              error: { code: 'inference-failed', message: String(e), frameId: j.frame.frameId },
            })),
          }),
      ),
      'decoder batch answer',
    );
  });
  send({ type: 'ready' });
} catch (e) {
  send({ type: 'init-error', message: e instanceof Error ? e.message : String(e) });
}
