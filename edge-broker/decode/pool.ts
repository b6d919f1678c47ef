/**
 * The edge's decoder pool: N decoder threads (worker_threads, decoder-thread.ts), each
 * with its own tail sessions, fed from one bounded FIFO queue with dynamic batching.
 *
 * - Batching: an idle thread takes up to `maxBatch` frames at once; while fewer are
 *   queued it waits at most `maxWaitMs` after the oldest arrived for more to come. At
 *   low load a frame goes alone after that wait; under load batches fill by themselves.
 * - Backpressure: `submit` refuses work while `maxQueue` frames wait (the caller answers
 *   the device `overloaded`); nothing is dropped silently, the heap stays bounded.
 * - Faults: a thread that dies (crash, out of memory, killed) is replaced; the frames of
 *   its batch are queued again at the front, once; a frame whose second try dies too gets
 *   an `inference-failed` error. Every submitted frame is answered exactly once.
 */
import { Worker } from 'node:worker_threads';
import type { Bundle } from '../../core/model/load.js';
import type { ErrorCode, ResultMessage } from '../../core/wire/messages.js';
import { background, log } from '../../core/util/log.js';
import { DecodeFailure, type DecodeJob } from './decoder.js';

/** What a decoder thread is started with. */
export interface ThreadInit {
  bundleDirs: string[];
  threads: number;
  edgeId: string;
}
export type ThreadRequest =
  | { type: 'batch'; id: number; jobs: DecodeJob[] }
  | { type: 'close' }
  /** Die on receiving the next batch, as a crash would (fault drills). */
  | { type: 'crash' };
export type ThreadOutcome =
  | { result: ResultMessage }
  | { error: { code: ErrorCode; message: string; frameId: number | null } };
export type ThreadAnswer =
  | { type: 'ready' }
  | { type: 'init-error'; message: string }
  | { type: 'done'; id: number; out: ThreadOutcome[] };

export interface Job extends DecodeJob {
  done(err: unknown, result?: ResultMessage): void;
}

interface Queued {
  job: Job;
  at: number;
  tries: number;
}

export interface PoolOptions {
  bundles: readonly Bundle[];
  /** Decoder threads. */
  workers: number;
  /** onnxruntime intra-op threads per decoder thread. */
  threads: number;
  edgeId: string;
  /** Frames queued before `submit` refuses. */
  maxQueue: number;
  /** Frames run through a tail together at most. */
  maxBatch?: number;
  /** How long an idle thread waits for a batch to fill (ms). */
  maxWaitMs?: number;
}

export interface PoolStats {
  batches: number;
  frames: number;
  /** Decoder threads replaced after dying. */
  restarts: number;
  /** Frames queued again because their thread died. */
  retried: number;
}

interface Slot {
  index: number;
  worker: Worker;
  ready: boolean;
  batch: { id: number; items: Queued[] } | null;
}

// the thread's module beside this one: built .js, or .ts when run from source under tsx
// (tests), whose loader hooks a worker thread does not inherit: it registers them first
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const THREAD_URL = new URL(FROM_SOURCE ? './thread.ts' : './thread.js', import.meta.url).href;
const THREAD_CODE = FROM_SOURCE
  ? `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(THREAD_URL)}); })`
  : `import(${JSON.stringify(THREAD_URL)})`;

export class DecoderPool {
  readonly stats: PoolStats = { batches: 0, frames: 0, restarts: 0, retried: 0 };
  readonly maxQueue: number;
  private readonly maxBatch: number;
  private readonly maxWaitMs: number;
  private readonly queue: Queued[] = [];
  private readonly slots: Slot[] = [];
  private nextBatch = 1;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  private constructor(private readonly o: PoolOptions) {
    this.maxQueue = o.maxQueue;
    this.maxBatch = Math.max(1, o.maxBatch ?? 8);
    this.maxWaitMs = Math.max(0, o.maxWaitMs ?? 2);
  }

  /** Start the threads; resolves once every one has loaded its networks. */
  static async start(o: PoolOptions): Promise<DecoderPool> {
    if (o.workers < 1) throw new Error('a pool needs at least one decoder thread');
    const pool = new DecoderPool(o);
    try {
      await Promise.all(Array.from({ length: o.workers }, (_, i) => pool.spawn(i)));
    } catch (e) {
      await pool.terminate();
      throw e;
    }
    return pool;
  }

  get size(): number {
    return this.slots.length;
  }

  get backlog(): number {
    return this.queue.length;
  }

  /** Whether close() was called: submit refuses everything from then on. */
  get closing(): boolean {
    return this.closed;
  }

  /** Frames in batches being decoded now. */
  get inFlight(): number {
    return this.slots.reduce((n, s) => n + (s.batch?.items.length ?? 0), 0);
  }

  /** Queue a job; false when the queue is full or the pool is closed. */
  submit(job: Job): boolean {
    if (this.closed || this.queue.length >= this.maxQueue) return false;
    this.queue.push({ job, at: performance.now(), tries: 0 });
    this.pump();
    return true;
  }

  /** Make decoder thread `i` die on the next batch it receives, with that batch in flight
   * (fault tests, operators' drills). An uncaught error ends the thread, not
   * `worker.terminate()`: terminating a thread while onnxruntime runs in it aborts the
   * whole process (a native error thrown into a torn-down environment; seen in CI). */
  kill(i: number): void {
    const req: ThreadRequest = { type: 'crash' };
    this.slots[i]?.worker.postMessage(req);
  }

  /** Index of a thread decoding a batch now, or -1. */
  busyThread(): number {
    return this.slots.findIndex((s) => s.batch !== null);
  }

  private spawn(index: number): Promise<void> {
    const init: ThreadInit = {
      bundleDirs: this.o.bundles.map((b) => b.dir),
      threads: this.o.threads,
      edgeId: this.o.edgeId,
    };
    const worker = new Worker(THREAD_CODE, {
      eval: true,
      workerData: init,
      name: `decoder-${index}`,
    });
    const slot: Slot = { index, worker, ready: false, batch: null };
    this.slots[index] = slot;
    return new Promise((resolve, reject) => {
      worker.on('message', (m: ThreadAnswer) => {
        if (m.type === 'ready') {
          slot.ready = true;
          resolve();
          this.pump();
        } else if (m.type === 'init-error') {
          reject(new Error(`decoder thread ${index}: ${m.message}`));
          background(worker.terminate(), 'decoder thread stop');
        } else if (slot.batch?.id === m.id) {
          const items = slot.batch.items;
          slot.batch = null;
          items.forEach((q, k) => this.finish(q, m.out[k]));
          this.pump();
        }
      });
      worker.on('error', (e) => {
        log.error({ thread: index, err: e.message }, 'decoder thread failed');
        reject(e);
      });
      worker.on('exit', (code) => {
        reject(new Error(`decoder thread ${index} exited (${code}) before it was ready`));
        // a thread that never came up is its spawner's to retry
        if (this.slots[index] === slot && slot.ready) this.lost(slot, code);
      });
    });
  }

  /** A thread is gone: its batch goes back to the queue (once), a new thread starts. */
  private lost(slot: Slot, code: number): void {
    const items = slot.batch?.items ?? [];
    slot.batch = null;
    slot.ready = false;
    if (this.closed && items.length === 0) return;
    log.warn({ thread: slot.index, code, frames: items.length }, 'decoder thread died');
    const again: Queued[] = [];
    for (const q of items) {
      if (q.tries < 2) {
        again.push(q);
        this.stats.retried++;
      } else {
        this.fail(q, 'inference-failed', 'the decoder thread died twice on this frame');
      }
    }
    this.queue.unshift(...again); // may pass maxQueue by one batch: accepted work is kept
    if (this.closed && this.slots.every((s) => !s.ready)) {
      for (const q of this.queue.splice(0)) this.fail(q, 'inference-failed', 'edge stopping');
      return;
    }
    this.stats.restarts++;
    const restart = (delay: number) =>
      setTimeout(() => {
        this.spawn(slot.index).catch((e: unknown) => {
          if (this.closed) return;
          log.error({ thread: slot.index, err: String(e) }, 'decoder thread restart failed');
          restart(Math.min(30_000, delay * 2));
        });
      }, delay).unref();
    restart(this.closed ? 0 : 50);
  }

  private finish(q: Queued, o: ThreadOutcome | undefined): void {
    if (!o) return this.fail(q, 'inference-failed', 'the decoder thread gave no answer');
    if ('result' in o) {
      try {
        q.job.done(null, o.result);
      } catch (e) {
        log.warn({ err: String(e) }, 'result handler failed');
      }
    } else this.fail(q, o.error.code, o.error.message);
  }

  private fail(q: Queued, code: ErrorCode, message: string): void {
    try {
      q.job.done(new DecodeFailure(code, message, q.job.frame.frameId));
    } catch (e) {
      log.warn({ err: String(e) }, 'error handler failed');
    }
  }

  private pump(): void {
    while (this.queue.length > 0) {
      const slot = this.slots.find((s) => s.ready && s.batch === null);
      if (!slot) return;
      const waited = performance.now() - this.queue[0]!.at;
      if (this.queue.length < this.maxBatch && waited < this.maxWaitMs && !this.closed) {
        this.timer ??= setTimeout(() => {
          this.timer = null;
          this.pump();
        }, this.maxWaitMs - waited);
        return;
      }
      const items = this.queue.splice(0, this.maxBatch);
      for (const q of items) q.tries++;
      const id = this.nextBatch++;
      slot.batch = { id, items };
      this.stats.batches++;
      this.stats.frames += items.length;
      // each payload is copied out of its packet (a Buffer is often a view of a shared
      // slab) into its own ArrayBuffer, which moves to the thread without another copy
      const jobs: DecodeJob[] = items.map(({ job }) => ({
        deviceId: job.deviceId,
        receivedAt: job.receivedAt,
        frame: { ...job.frame, payload: new Uint8Array(job.frame.payload) },
      }));
      const req: ThreadRequest = { type: 'batch', id, jobs };
      try {
        slot.worker.postMessage(
          req,
          jobs.map((j) => j.frame.payload.buffer as ArrayBuffer),
        );
      } catch (e) {
        slot.batch = null;
        for (const q of items)
          this.fail(q, 'inference-failed', `not sent to the decoder: ${String(e)}`);
      }
    }
  }

  /** Stop taking work, answer what is queued or in flight, stop the threads. */
  async close(): Promise<void> {
    this.closed = true;
    this.pump();
    const end = Date.now() + 30_000;
    while ((this.queue.length > 0 || this.inFlight > 0) && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 5));
    }
    for (const q of this.queue.splice(0)) this.fail(q, 'inference-failed', 'edge stopping');
    await this.terminate();
  }

  private async terminate(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const s of this.slots) {
      if (!s) continue;
      for (const q of s.batch?.items ?? []) this.fail(q, 'inference-failed', 'edge stopping');
      s.batch = null;
      s.ready = false;
      await s.worker.terminate();
    }
  }
}
