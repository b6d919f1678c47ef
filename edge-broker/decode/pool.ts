/**
 * The edge's decoder pool: N decoder processes (child_process.fork of host.ts), each with
 * its own sessions, fed from one bounded FIFO queue with dynamic batching.
 *
 * - Isolation: whatever fails inside decoding (an exception, a native abort in
 *   onnxruntime, running out of memory, a session that never returns) ends or stalls one
 *   decoder process, never the edge. Each process has a heap limit (`heapMiB`) and is
 *   the kernel's first choice when memory runs out.
 * - Batching: an idle decoder takes up to `maxBatch` frames at once; while fewer are
 *   queued it waits at most `maxWaitMs` after the oldest arrived for more to come. At
 *   low load a frame goes alone after that wait; under load batches fill by themselves.
 * - Backpressure: `submit` refuses work while `maxQueue` frames wait (the caller answers
 *   the device `overloaded`); nothing is dropped silently, the heap stays bounded.
 * - Faults: a decoder that dies, or does not answer a batch within its deadline (then it
 *   is killed), is replaced, sooner after a first death and later after repeated ones;
 *   the frames of its batch are queued again at the front, once; a frame that was in
 *   flight in two deaths gets an `inference-failed` error. Every submitted frame is
 *   answered exactly once.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Bundle } from '../../core/model/load.js';
import type { ErrorCode, ResultMessage } from '../../core/wire/messages.js';
import { log } from '../../core/util/log.js';
import { DecodeFailure, type DecodeJob } from './decoder.js';
import { parseAnswer, type HostInit, type HostOutcome, type HostRequest } from './protocol.js';

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
  /** Decoder processes. */
  workers: number;
  /** onnxruntime intra-op threads per decoder process. */
  threads: number;
  edgeId: string;
  /** Frames queued before `submit` refuses. */
  maxQueue: number;
  /** Frames run through a tail together at most. */
  maxBatch?: number;
  /** How long an idle decoder waits for a batch to fill (ms). */
  maxWaitMs?: number;
  /** JavaScript heap limit of each decoder process (MiB); past it the process dies, not
   * the edge. Default 512. */
  heapMiB?: number;
  /** A batch not answered within max(`hangMinMs`, `hangFactor` x the typical time of a
   * batch of its size) gets its decoder killed. Defaults 2000 ms and 50. */
  hangMinMs?: number;
  hangFactor?: number;
  /** A module (path or URL) each decoder process imports before it loads its networks;
   * its export `beforeBatch(jobs)`, if any, is called before every batch. */
  preload?: string;
}

export interface PoolStats {
  batches: number;
  frames: number;
  /** Decoder processes replaced after dying. */
  restarts: number;
  /** Frames queued again because their decoder died. */
  retried: number;
  /** Decoders killed for not answering a batch in time. */
  hung: number;
}

interface Batch {
  id: number;
  items: Queued[];
  sentAt: number;
  timer: NodeJS.Timeout;
}

interface Slot {
  index: number;
  child: ChildProcess;
  ready: boolean;
  gone: boolean;
  batch: Batch | null;
  /** The end of the process's stderr, logged when it dies (a native abort's message). */
  stderr: string;
}

// the decoder process's module beside this one: built .js, or .ts when run from source
// (tests), started with tsx's loader
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const HOST_FILE = fileURLToPath(new URL(FROM_SOURCE ? './host.ts' : './host.js', import.meta.url));
const LOADER = FROM_SOURCE ? ['--import', import.meta.resolve('tsx')] : [];
const RESTART_MS = 100;
const MAX_RESTART_MS = 30_000;
const STDERR_TAIL = 2048;
const START_MS = 120_000;

export class DecoderPool {
  readonly stats: PoolStats = { batches: 0, frames: 0, restarts: 0, retried: 0, hung: 0 };
  readonly maxQueue: number;
  private readonly maxBatch: number;
  private readonly maxWaitMs: number;
  private readonly queue: Queued[] = [];
  private readonly slots: Slot[] = [];
  /** Deaths of each decoder since its last answered batch: the restart backoff. */
  private readonly deaths: number[] = [];
  /** Mean time per frame of answered batches (ms), for the hang deadline. */
  private perFrameMs: number | null = null;
  private nextBatch = 1;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  private constructor(private readonly o: PoolOptions) {
    this.maxQueue = o.maxQueue;
    this.maxBatch = Math.max(1, o.maxBatch ?? 8);
    this.maxWaitMs = Math.max(0, o.maxWaitMs ?? 2);
  }

  /** Start the decoders; resolves once every one has loaded its networks. */
  static async start(o: PoolOptions): Promise<DecoderPool> {
    if (o.workers < 1) throw new Error('a pool needs at least one decoder');
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

  private spawn(index: number): Promise<void> {
    const o = this.o;
    const init: HostInit = {
      bundleDirs: o.bundles.map((b) => b.dir),
      threads: o.threads,
      edgeId: o.edgeId,
      index,
      preload: o.preload ?? null,
    };
    const child = fork(HOST_FILE, [JSON.stringify(init)], {
      execArgv: [...LOADER, `--max-old-space-size=${Math.max(16, o.heapMiB ?? 512)}`],
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    });
    const slot: Slot = { index, child, ready: false, gone: false, batch: null, stderr: '' };
    this.slots[index] = slot;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (s: string) => {
      slot.stderr = (slot.stderr + s).slice(-STDERR_TAIL);
    });
    return new Promise((resolve, reject) => {
      // a decoder that neither comes up nor fails (a load that never ends) is given up
      const starting = setTimeout(() => {
        reject(new Error(`decoder process ${index} not ready after ${START_MS} ms`));
        child.kill('SIGKILL');
      }, START_MS);
      starting.unref();
      child.on('message', (raw: unknown) => {
        const m = parseAnswer(raw);
        if (!m) {
          log.error({ decoder: index }, 'decoder sent a malformed message: killed');
          child.kill('SIGKILL');
        } else if (m.type === 'ready') {
          clearTimeout(starting);
          slot.ready = true;
          resolve();
          this.pump();
        } else if (m.type === 'init-error') {
          reject(new Error(`decoder process ${index}: ${m.message}`));
          child.kill('SIGKILL');
        } else if (slot.batch?.id === m.id) {
          this.answered(slot, slot.batch, m.out);
        }
      });
      child.on('error', (e) => {
        // not started, or its channel broke: it is gone or about to be
        log.error({ decoder: index, err: e.message }, 'decoder process failed');
        reject(e);
        const running = child.pid !== undefined && child.exitCode === null;
        if (running && child.signalCode === null) child.kill('SIGKILL');
        else this.exited(slot, `error: ${e.message}`);
      });
      child.on('exit', (code, signal) => {
        clearTimeout(starting);
        reject(
          new Error(`decoder process ${index} exited (${signal ?? code}) before it was ready`),
        );
        this.exited(slot, signal ?? String(code));
      });
    });
  }

  private answered(slot: Slot, batch: Batch, out: HostOutcome[]): void {
    clearTimeout(batch.timer);
    slot.batch = null;
    this.deaths[slot.index] = 0;
    const perFrame = (performance.now() - batch.sentAt) / batch.items.length;
    this.perFrameMs = this.perFrameMs === null ? perFrame : 0.9 * this.perFrameMs + 0.1 * perFrame;
    batch.items.forEach((q, k) => this.finish(q, out[k]));
    this.pump();
  }

  /** The process is gone (once per process, whichever event told first). */
  private exited(slot: Slot, how: string): void {
    if (slot.gone) return;
    slot.gone = true;
    // a process that never came up is its spawner's to retry
    if (slot.ready) this.lost(slot, how);
  }

  /** A decoder died: its batch goes back to the queue (once), a new one starts. */
  private lost(slot: Slot, how: string): void {
    const batch = slot.batch;
    if (batch) clearTimeout(batch.timer);
    const items = batch?.items ?? [];
    slot.batch = null;
    slot.ready = false;
    if (this.closed) {
      for (const q of items) this.fail(q, 'inference-failed', 'edge stopping');
      if (this.slots.every((s) => !s.ready)) {
        for (const q of this.queue.splice(0)) this.fail(q, 'inference-failed', 'edge stopping');
      }
      return;
    }
    const stderr = slot.stderr.trim().split('\n').slice(-5).join('\n');
    log.warn(
      { decoder: slot.index, exit: how, frames: items.length, ...(stderr ? { stderr } : {}) },
      'decoder process died',
    );
    const again: Queued[] = [];
    for (const q of items) {
      if (q.tries < 2) {
        again.push(q);
        this.stats.retried++;
      } else {
        this.fail(q, 'inference-failed', 'the decoder died twice with this frame');
      }
    }
    this.queue.unshift(...again); // may pass maxQueue by one batch: accepted work is kept
    this.stats.restarts++;
    const deaths = (this.deaths[slot.index] = (this.deaths[slot.index] ?? 0) + 1);
    const restart = (delay: number) =>
      setTimeout(() => {
        if (this.closed) return;
        this.spawn(slot.index).catch((e: unknown) => {
          if (this.closed) return;
          log.error({ decoder: slot.index, err: String(e) }, 'decoder restart failed');
          restart(Math.min(MAX_RESTART_MS, delay * 2));
        });
      }, delay).unref();
    restart(Math.min(MAX_RESTART_MS, RESTART_MS * 2 ** (deaths - 1)));
    this.pump();
  }

  /** How long a batch of `n` frames may take before its decoder is taken for hung. */
  private deadline(n: number): number {
    const min = this.o.hangMinMs ?? 2000;
    // before any batch was answered (start-up, first sessions): a generous bound
    if (this.perFrameMs === null) return 5 * min;
    return Math.max(min, (this.o.hangFactor ?? 50) * this.perFrameMs * n);
  }

  private hung(slot: Slot, batch: Batch): void {
    // an answer that arrived while this timer was due is read first (I/O before check)
    setImmediate(() => {
      if (slot.batch !== batch || slot.gone) return;
      this.stats.hung++;
      log.warn(
        { decoder: slot.index, frames: batch.items.length, ms: performance.now() - batch.sentAt },
        'decoder did not answer in time: killed',
      );
      slot.child.kill('SIGKILL');
    });
  }

  private finish(q: Queued, o: HostOutcome | undefined): void {
    if (!o) return this.fail(q, 'inference-failed', 'the decoder gave no answer');
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
      const batch: Batch = {
        id,
        items,
        sentAt: performance.now(),
        timer: setTimeout(() => this.hung(slot, batch), this.deadline(items.length)),
      };
      batch.timer.unref();
      slot.batch = batch;
      this.stats.batches++;
      this.stats.frames += items.length;
      // only the frames' own bytes travel (a payload is often a view of a larger buffer)
      const jobs: DecodeJob[] = items.map(({ job }) => ({
        deviceId: job.deviceId,
        receivedAt: job.receivedAt,
        frame: { ...job.frame },
      }));
      const req: HostRequest = { type: 'batch', id, jobs };
      // a batch that cannot be sent is the deadline's: the decoder is gone or going
      slot.child.send(req, (e) => {
        if (e && slot.batch === batch) {
          log.warn({ decoder: slot.index, err: e.message }, 'batch not sent');
          slot.child.kill('SIGKILL');
        }
      });
    }
  }

  /** Stop taking work, answer what is queued or in flight, stop the decoders. */
  async close(): Promise<void> {
    this.closed = true;
    this.pump();
    const end = Date.now() + 30_000;
    // no decoder is started again once closing: a queue none is left for is answered now
    const waiting = () =>
      (this.queue.length > 0 && this.slots.some((s) => s.ready)) || this.inFlight > 0;
    while (waiting() && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 5));
    }
    for (const q of this.queue.splice(0)) this.fail(q, 'inference-failed', 'edge stopping');
    await this.terminate();
  }

  private async terminate(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await Promise.all(this.slots.map((s) => this.stop(s)));
  }

  /** Ask a decoder to close its sessions and exit; killed if it has not within 2 s. */
  private async stop(s: Slot | undefined): Promise<void> {
    if (!s) return;
    if (s.batch) clearTimeout(s.batch.timer);
    for (const q of s.batch?.items ?? []) this.fail(q, 'inference-failed', 'edge stopping');
    s.batch = null;
    s.ready = false;
    const c = s.child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    let timer: NodeJS.Timeout | undefined;
    const exited = new Promise<void>((r) => {
      c.once('exit', () => r());
      // killed after 2 s; given up after 5 s (a process that never started has no exit)
      timer = setTimeout(() => {
        c.kill('SIGKILL');
        timer = setTimeout(r, 3000);
      }, 2000);
    });
    const req: HostRequest = { type: 'close' };
    if (c.connected) c.send(req, () => undefined);
    else c.kill('SIGKILL');
    await exited;
    clearTimeout(timer);
  }
}
