/**
 * The hand-over between a live source (a camera, images on an MQTT topic) and the agent:
 * a bounded queue that drops the oldest frame when full, so a source faster than the
 * agent's frame rate never queues without bound and the agent always gets the newest
 * frames. A camera uses capacity 1: the frame the agent takes is the latest one.
 */
export class DropOldestQueue<T> {
  private items: T[] = [];
  private waiter: (() => void) | null = null;
  private ended = false;
  private failure: Error | null = null;
  /** Frames dropped because a newer one came before the agent took them. */
  dropped = 0;
  /** Frames pushed in all. */
  received = 0;

  constructor(readonly capacity: number) {
    if (!(capacity >= 1)) throw new Error('queue capacity must be at least 1');
  }

  push(item: T): void {
    if (this.ended) return;
    this.received++;
    this.items.push(item);
    while (this.items.length > this.capacity) {
      this.items.shift();
      this.dropped++;
    }
    this.wake();
  }

  /** No more frames; with an error, the consumer's next take throws it. */
  end(err?: Error): void {
    if (this.ended) return;
    this.ended = true;
    if (err) this.failure = err;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** The oldest frame kept (waits for one), or undefined once ended and empty. */
  async take(): Promise<T | undefined> {
    for (;;) {
      if (this.items.length > 0) return this.items.shift();
      if (this.failure) throw this.failure;
      if (this.ended) return undefined;
      await new Promise<void>((r) => (this.waiter = r));
    }
  }
}
