/**
 * The agent's uplink: every frame from its acceptance until the edge answers it.
 *
 * Frames wait in order; at most `window` of them are in flight (sent on the current
 * connection, unanswered). A frame unanswered when its connection is lost is sent again
 * on the next one (the edge collapses duplicates). A result or error for a frame ends it;
 * a frame with no answer after `resultTimeoutMs` counts as lost.
 *
 * A stop that is not immediate lets the frames in flight get their answers first: the
 * session keeps its connection until they are answered, the connection is lost or the
 * result timeout passes. What is still unanswered then counts as lost (without an outbox)
 * or stays in the outbox for the next start. So after a stop every frame accepted is
 * counted once: answered (result or error), lost, dropped, or kept in the outbox.
 *
 * With an outbox (outbox.ts) every accepted frame is written to disk first, so frames
 * survive a lost link and a restart, and capture goes on while offline: when the outbox
 * is full the oldest frames not in flight are dropped (drop-oldest), counted and logged.
 * Without one, capture waits while `window` frames are unanswered.
 */
import { parseError, parseResult } from '../core/wire/messages.js';
import { background, log } from '../core/util/log.js';
import type { Bus } from './bus.js';
import { Outbox, type OutboxOptions } from './outbox.js';

export interface UplinkOptions {
  deviceId: string;
  /** Frames sent but not yet answered before the agent waits (default 4). */
  maxInFlight?: number;
  /** A frame without an answer after this long counts as lost (default 30 s). */
  resultTimeoutMs?: number;
  outbox?: OutboxOptions;
}

/** What the uplink needs of the session. */
export interface Link {
  /** The current connection's number once subscribed; null while offline. */
  readonly connection: number | null;
  publishFrame(frame: Buffer, onError: (err: Error) => void): void;
  /** Keep the connection open until `until` settles when the session stops (a link
   * without it closes at once: frames in flight are then given up at the timeout). */
  holdClose?(until: Promise<void>): void;
}

interface Pending {
  /** Monotonic capture time, for latency. */
  t0: number;
  /** Kept until answered: re-sent after a reconnect. */
  frame: Buffer;
  /** Connection number it was last published on; 0 = not yet. */
  sentOn: number;
  /** Monotonic time it was last published. */
  sentAt: number;
}

export class Uplink {
  private readonly pending = new Map<number, Pending>();
  private outbox: Outbox | null = null;
  private waiters: (() => void)[] = [];
  /** Stopping: capture makes no more frames. */
  private closing = false;
  /** Stopped: nothing more is waited for (drained() resolves). */
  private released = false;
  private readonly window: number;

  constructor(
    private readonly opts: UplinkOptions,
    private readonly bus: Bus,
    private readonly link: Link,
  ) {
    this.window = opts.maxInFlight ?? 4;
    bus.on('online', () => {
      const resent = this.flush();
      if (resent) log.info({ device: opts.deviceId, resent }, 're-sent unanswered frames');
      this.wake();
    });
    bus.on('offline', () => this.wake());
  }

  /** Open the outbox (if any) and take back the frames an earlier run left in it. */
  async start(): Promise<void> {
    if (!this.opts.outbox) return;
    const { outbox, restored } = await Outbox.open(this.opts.outbox);
    this.outbox = outbox;
    const t0 = performance.now();
    for (const e of restored) {
      this.pending.set(e.frameId, { t0, frame: e.frame, sentOn: 0, sentAt: 0 });
    }
    this.bus.emit('restored', restored.length);
    if (restored.length) {
      log.info({ device: this.opts.deviceId, frames: restored.length }, 'outbox restored');
    }
  }

  /** Frames accepted and not yet answered. */
  get size(): number {
    return this.pending.size;
  }

  /** Whether capture may make the next frame: with an outbox, always while offline (the
   * outbox bounds it); otherwise while fewer than `window` frames wait for answers. */
  private hasRoom(): boolean {
    return this.outbox
      ? this.link.connection === null || this.inFlight() < this.window
      : this.pending.size < this.window;
  }

  /** Resolves when capture may make the next frame (or the uplink is stopping). */
  room(): Promise<void> {
    return this.until(() => this.closing || this.hasRoom());
  }

  /** Resolves when every frame is answered or given up (or the uplink has stopped). */
  drained(): Promise<void> {
    return this.until(() => this.released || this.pending.size === 0);
  }

  /** Accept a frame (to the outbox first, if any) and send it when the window allows;
   * false when it was dropped (the outbox is full of frames in flight). */
  async put(frameId: number, capturedAt: number, t0: number, frame: Buffer): Promise<boolean> {
    if (this.outbox) {
      if (!(await this.makeRoom(frame.length))) {
        this.drop(frameId, 'the outbox is full of frames in flight');
        return false;
      }
      await this.outbox.put({ frameId, capturedAt, frame });
    }
    if (this.released) {
      // made while the uplink stopped: kept in the outbox, or lost
      if (!this.outbox) this.bus.emit('lost', frameId);
      return true;
    }
    this.pending.set(frameId, { t0, frame, sentOn: 0, sentAt: 0 });
    this.flush();
    return true;
  }

  /** A message on the device's `result` topic. */
  onResult(payload: Buffer): void {
    const r = parseResult(payload);
    const p = r && this.pending.get(r.frameId);
    if (!r || !p) return; // unknown, duplicate or already timed out
    const now = performance.now();
    this.end(r.frameId);
    const latencyMs = now - p.t0;
    this.bus.emit('answered', { bytes: p.frame.length, sentAt: p.sentAt, at: now, latencyMs });
    this.bus.emit('result', r, latencyMs);
    this.flush();
    this.wake();
  }

  /** A message on the device's `error` topic. */
  onError(payload: Buffer): void {
    const e = parseError(payload);
    if (!e) return;
    if (e.frameId !== null) {
      if (!this.pending.has(e.frameId)) return;
      this.end(e.frameId);
    }
    log.warn(
      { device: this.opts.deviceId, frameId: e.frameId, code: e.code, reason: e.reason },
      'edge error',
    );
    this.bus.emit('error', e);
    this.flush();
    this.wake();
  }

  /** Give up frames unanswered for too long: with an outbox only a frame sent and
   * unanswered on this connection times out; without one, any frame older than the
   * timeout does (memory stays bounded). */
  sweep(): void {
    const limit = performance.now() - (this.opts.resultTimeoutMs ?? 30_000);
    const conn = this.link.connection;
    for (const [id, p] of this.pending) {
      const old = this.outbox ? p.sentOn === conn && p.sentAt < limit : p.t0 < limit;
      if (old) {
        this.end(id);
        log.debug({ device: this.opts.deviceId, frameId: id }, 'frame lost: no answer in time');
        this.bus.emit('lost', id);
      }
    }
    this.flush();
    this.wake();
  }

  /** Frames sent on this connection and not yet answered. */
  inFlight(): number {
    const conn = this.link.connection;
    if (conn === null) return 0;
    let n = 0;
    for (const p of this.pending.values()) if (p.sentOn === conn) n++;
    return n;
  }

  /** Stop: capture makes no more frames. `now`: the frames not answered are given up at
   * once; otherwise the session's connection stays open until the frames in flight are
   * answered (at most `resultTimeoutMs`; not once offline), then the rest is given up.
   * Given up: counted lost, or, with an outbox, kept in it for the next start. */
  stop(now: boolean): void {
    if (this.closing && !now) return;
    this.closing = true;
    if (now) this.release();
    else {
      const settled = this.settle();
      if (this.link.holdClose) this.link.holdClose(settled);
      else background(settled, 'uplink stop');
    }
    this.wake();
  }

  /** Wait for the answers of the frames in flight (sent on this connection), at most the
   * result timeout, then release the rest. */
  private async settle(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((r) => {
      timer = setTimeout(r, this.opts.resultTimeoutMs ?? 30_000);
    });
    await Promise.race([
      timeout,
      this.until(() => this.released || this.link.connection === null || this.inFlight() === 0),
    ]);
    clearTimeout(timer);
    this.release();
  }

  /** Give up what is still unanswered: lost, or kept in the outbox for the next start. */
  private release(): void {
    if (this.released) return;
    this.released = true;
    if (this.pending.size > 0)
      log.debug(
        {
          device: this.opts.deviceId,
          frames: [...this.pending.keys()].slice(0, 20),
          online: this.link.connection !== null,
          kept: !!this.outbox,
        },
        'stopped with frames unanswered',
      );
    if (!this.outbox) for (const id of this.pending.keys()) this.bus.emit('lost', id);
    this.pending.clear();
    this.wake();
  }

  /** The frame is answered or given up: it leaves the window and the outbox. */
  private end(frameId: number): void {
    this.pending.delete(frameId);
    this.outbox
      ?.remove(frameId)
      .catch((e: Error) =>
        log.warn({ device: this.opts.deviceId, frameId, err: e.message }, 'outbox remove failed'),
      );
  }

  /** Publish the unsent frames, oldest first, while the in-flight window has room;
   * returns how many of them had been sent on an earlier connection. */
  private flush(): number {
    const conn = this.link.connection;
    // stopping with an outbox: frames not yet sent wait in it for the next start
    if (conn === null || this.released || (this.closing && this.outbox)) return 0;
    let room = this.window - this.inFlight();
    let resent = 0;
    for (const [frameId, p] of this.pending) {
      if (room <= 0) break;
      if (p.sentOn === conn) continue;
      resent += p.sentOn > 0 ? 1 : 0;
      p.sentOn = conn;
      p.sentAt = performance.now();
      this.bus.emit('published', { frameId, bytes: p.frame.length, at: p.sentAt });
      this.link.publishFrame(p.frame, (err) =>
        log.warn({ device: this.opts.deviceId, frameId, err: err.message }, 'publish failed'),
      );
      room--;
    }
    return resent;
  }

  /** Drop-oldest: drop unsent frames, oldest first, until `bytes` more fit the outbox;
   * false when only frames in flight are left. */
  private async makeRoom(bytes: number): Promise<boolean> {
    const box = this.outbox!;
    while (!box.fits(bytes)) {
      const conn = this.link.connection;
      const victim = [...this.pending].find(([, q]) => conn === null || q.sentOn !== conn);
      if (!victim) return false;
      this.pending.delete(victim[0]);
      await box.remove(victim[0]);
      this.drop(victim[0], 'outbox full (drop-oldest)');
    }
    return true;
  }

  private drop(frameId: number, why: string): void {
    log.warn({ device: this.opts.deviceId, frameId, why }, 'frame dropped');
    this.bus.emit('dropped', frameId, why);
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private until(cond: () => boolean): Promise<void> {
    return new Promise((resolve) => {
      const check = () => (cond() ? resolve() : this.waiters.push(check));
      check();
    });
  }
}
