/**
 * Decoder workers: N FrameDecoders pulling from one bounded FIFO queue.
 * A full queue refuses new work at once (the caller reports 'overloaded' to the device);
 * nothing is dropped silently and the heap stays bounded.
 */
import type { Frame } from '../core/protocol/frame.js';
import type { ResultMessage } from '../core/protocol/messages.js';
import type { FrameDecoder } from './decoder.js';

export interface Job {
  deviceId: string;
  frame: Frame;
  receivedAt: number;
  done(err: unknown, result?: ResultMessage): void;
}

export class DecoderPool {
  private readonly queue: Job[] = [];
  private idle: FrameDecoder[];
  private closed = false;

  constructor(
    private readonly decoders: readonly FrameDecoder[],
    readonly maxQueue: number,
  ) {
    if (decoders.length === 0) throw new Error('a pool needs at least one decoder');
    this.idle = [...decoders];
  }

  get size(): number {
    return this.decoders.length;
  }

  get backlog(): number {
    return this.queue.length;
  }

  /** Queue a job; false when the queue is full or the pool is closed. */
  submit(job: Job): boolean {
    if (this.closed || this.queue.length >= this.maxQueue) return false;
    this.queue.push(job);
    this.pump();
    return true;
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const d = this.idle.pop()!;
      const job = this.queue.shift()!;
      d.run(job.deviceId, job.frame, job.receivedAt)
        .then(
          (r) => job.done(null, r),
          (e: unknown) => job.done(e),
        )
        .catch(() => undefined) // a throwing `done` must not become an unhandled rejection
        .finally(() => {
          this.idle.push(d);
          this.pump();
        });
    }
  }

  /** Stop taking work, wait for queued jobs to finish, close the decoders. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.queue.length > 0 || this.idle.length < this.decoders.length) {
      await new Promise((r) => setTimeout(r, 5));
    }
    for (const d of this.decoders) await d.close();
  }
}
