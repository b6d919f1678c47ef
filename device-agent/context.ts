/**
 * The agent's wire v2 (core/wire/frame-v2.ts, context.ts): the link the uplink sends
 * through when the agent runs `wire: 'v2'`.
 *
 * The uplink (and the outbox) keep every frame as v1: self-describing, so it survives a
 * restart, a config change or an edge that lost its state. This link turns each one into
 * a lean v2 frame as it goes out, when the connection has an acknowledged context for the
 * frame's model, codec, point and shape; any other frame goes as v1 and, the first time
 * its kind is seen, a context for it is announced (from its frame id on), so the frames
 * after the acknowledgement go as v2.
 *
 * - A connection starts with an announce of how the device wants its answers (compact);
 *   frames wait until the edge acknowledges it (so every answer of the connection comes
 *   compact, on `.../a`), and it is announced again while unacknowledged, with backoff.
 * - Contexts belong to one connection: a reconnect starts again. An `unknown-context`
 *   error (the edge restarted, or dropped the context for newer ones) makes the frames
 *   sent in that context go again as v1 and its kind be announced again.
 * - Batching (optional): v2 frames of one context go together, at most `maxFrames` per
 *   PUBLISH and at most `maxDelayMs` after the first of them.
 */
import type { CompactAnswer, ContextAck } from '../core/wire/context.js';
import { encodeAnnounce, type ContextAnnounce } from '../core/wire/context.js';
import {
  encodeV2,
  encodeV2Batch,
  entryOf,
  inContext,
  V2_MAX_BATCH,
  V2_MAX_SEQ,
  type StreamContext,
  type V2Entry,
} from '../core/wire/frame-v2.js';
import { decodeFrame, FrameError, type Frame } from '../core/wire/frame.js';
import { RESULT_VERSION, type ErrorMessage, type ResultMessage } from '../core/wire/messages.js';
import { log } from '../core/util/log.js';
import type { Bus } from './bus.js';
import type { Link } from './uplink.js';

/** Contexts a device holds at once (the edge holds as many: contexts.ts). */
const MAX_CONTEXTS = 8;
/** Frames sent and unanswered that the link remembers (for answers and re-sends). */
const MAX_SENT = 4096;
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 30_000;

export interface BatchOptions {
  /** Frames per PUBLISH at most (2..255). */
  maxFrames: number;
  /** Longest a frame waits for others (ms). */
  maxDelayMs: number;
}

export interface WireOptions {
  deviceId: string;
  topics: { features: string; f: string; ctx: string };
  /** Classes in each answer (1: the best only); a config may change it (configure()). */
  topk: number;
  /** A config may change it (configure()). */
  batch: BatchOptions | null;
  /** Names of a frame's model and codec and its labels, for the results made from
   * compact answers. */
  describe: (f: Frame) => { model: string; codec: string; labels: readonly string[] };
}

/** What the link needs of the session. */
export interface WireSession {
  publish(topic: string, payload: Buffer, opts: { qos: 0 | 1 }): Promise<void>;
  /** Keep the connection open on a stop until `until` settles (the frames in flight). */
  holdClose?(until: Promise<void>): void;
}

interface Held extends StreamContext {
  /** Announce id; acked once the edge said so. */
  id: number;
  acked: boolean;
}

interface Sent {
  frame: Buffer;
  meta: Frame;
  /** The context it went in; null: as v1. */
  ctx: number | null;
}

export class WireLink implements Link {
  private conn: number | null = null;
  private ready = false;
  private hello = -1;
  private nextId = 1;
  private nextCtx = 0;
  private contexts: Held[] = [];
  private readonly sent = new Map<number, Sent>();
  private retry: NodeJS.Timeout | undefined;
  private retryMs = FIRST_RETRY_MS;
  private warned = false;
  private batch: { ctx: number; entries: V2Entry[]; timer: NodeJS.Timeout } | null = null;
  /** Packets published, by kind (for tests and benches). */
  readonly counts = { v1: 0, v2: 0, batches: 0, announces: 0 };
  private readonly o: WireOptions;

  constructor(
    options: Readonly<WireOptions>,
    private readonly session: WireSession,
    private readonly bus: Bus,
  ) {
    this.o = { ...options };
    const done = (id: number) => this.sent.delete(id);
    bus.on('result', (r) => done(r.frameId));
    bus.on('error', (e) => e.frameId !== null && done(e.frameId));
    bus.on('lost', done);
    bus.on('dropped', done);
  }

  /** The answers and batching in force. */
  get settings(): { topk: number; batch: BatchOptions | null } {
    return { topk: this.o.topk, batch: this.o.batch };
  }

  /** A config's topk and batching, applied at once: a batch waiting goes out as it was
   * made; a new topk is announced again (the session's answers follow the ack; the
   * frames keep going meanwhile: the edge answers them one way or the other, both read). */
  configure(c: { topk?: number; batch?: BatchOptions | null }): void {
    if (c.batch !== undefined) {
      if (this.batch) this.flushBatch();
      this.o.batch = c.batch === null ? null : { ...c.batch };
    }
    if (c.topk !== undefined && c.topk !== this.o.topk) {
      this.o.topk = c.topk;
      if (this.conn !== null && this.ready) {
        this.hello = this.nextId++;
        this.announce({ id: this.hello });
      }
    }
  }

  /** The connection frames may go on: only once the edge acknowledged the session. */
  get connection(): number | null {
    return this.ready ? this.conn : null;
  }

  /** The session is subscribed on connection `conn`: announce, and go online on the ack. */
  online(conn: number): void {
    this.reset();
    this.conn = conn;
    this.retryMs = FIRST_RETRY_MS;
    this.sayHello();
  }

  offline(): void {
    this.reset();
    this.conn = null;
  }

  stop(): void {
    this.offline();
  }

  private reset(): void {
    this.ready = false;
    this.contexts = [];
    this.sent.clear();
    clearTimeout(this.retry);
    this.retry = undefined;
    if (this.batch) clearTimeout(this.batch.timer);
    this.batch = null;
  }

  private sayHello(): void {
    const conn = this.conn;
    this.hello = this.nextId++;
    this.announce({ id: this.hello });
    this.retry = setTimeout(() => {
      if (this.conn !== conn || this.ready) return;
      if (!this.warned) {
        this.warned = true;
        log.warn(
          { device: this.o.deviceId },
          'the edge does not acknowledge wire v2 (an older edge, or a broker with share workers?): frames wait; run the agent with wire v1 there',
        );
      }
      this.retryMs = Math.min(MAX_RETRY_MS, this.retryMs * 2);
      this.sayHello();
    }, this.retryMs);
    this.retry.unref();
  }

  private announce(a: { id: number; context?: StreamContext }): void {
    const msg: ContextAnnounce = {
      v: 1,
      id: a.id,
      ts: Date.now(),
      answers: 'compact',
      topk: this.o.topk,
      ...(a.context ? { context: a.context } : {}),
    };
    this.counts.announces++;
    this.session
      .publish(this.o.topics.ctx, encodeAnnounce(msg), { qos: 1 })
      .catch((e: Error) =>
        log.warn({ device: this.o.deviceId, err: e.message }, 'announce not sent'),
      );
  }

  /** The edge's answer to an announce. */
  onAck(ack: ContextAck): void {
    if (ack.id === this.hello) {
      if (!ack.ok) {
        log.error(
          { device: this.o.deviceId, reason: ack.reason },
          'the edge refused the wire v2 session',
        );
        return;
      }
      if (this.ready || this.conn === null) return;
      this.ready = true;
      this.warned = false;
      clearTimeout(this.retry);
      this.bus.emit('online', this.conn);
      return;
    }
    const c = this.contexts.find((x) => x.id === ack.id);
    if (!c) return;
    if (ack.ok) c.acked = true;
    else {
      // frames of this kind stay v1 on this connection
      log.warn({ device: this.o.deviceId, ctx: c.ctx, reason: ack.reason }, 'context refused');
    }
  }

  /** An error from the edge; true when it was the link's (an unknown context). */
  onError(e: ErrorMessage): boolean {
    if (e.code !== 'unknown-context') return false;
    if (e.context === undefined) return true;
    const ctx = e.context;
    log.info(
      { device: this.o.deviceId, ctx },
      'context unknown to the edge: frames go again as v1',
    );
    this.contexts = this.contexts.filter((c) => c.ctx !== ctx);
    if (this.batch?.ctx === ctx) {
      // the batch's frames are in `sent`: they go again below
      clearTimeout(this.batch.timer);
      this.batch = null;
    }
    // the edge may have lost the whole session: say how answers go before the re-sends
    this.hello = this.nextId++;
    this.announce({ id: this.hello });
    for (const [frameId, s] of this.sent) {
      if (s.ctx !== ctx) continue;
      s.ctx = null;
      this.publish(this.o.topics.features, s.frame, frameId);
      this.counts.v1++;
    }
    return true;
  }

  /** A compact answer: the full result for the uplink (null: not a frame of ours). */
  resultOf(a: CompactAnswer): ResultMessage | null {
    const s = this.sent.get(a.frameId);
    if (!s) return null;
    const f = s.meta;
    const d = this.o.describe(f);
    const label = (i: number) => d.labels[i] ?? String(i);
    const topk = [
      { classIndex: a.classIndex, label: label(a.classIndex), score: a.score },
      ...(a.more ?? []).map((m) => ({ ...m, label: label(m.classIndex) })),
    ];
    return {
      v: RESULT_VERSION,
      deviceId: this.o.deviceId,
      frameId: a.frameId,
      classIndex: a.classIndex,
      label: label(a.classIndex),
      score: a.score,
      topk,
      modelId: f.modelId,
      modelVersion: f.modelVersion,
      model: d.model,
      codec: d.codec,
      point: f.point,
      payloadBytes: f.payload.byteLength,
      captureTs: f.captureTs,
      ...(f.tag !== undefined ? { source: f.tag } : {}),
      // a compact answer carries no edge timings
      latency: { decodeMs: 0, tailMs: 0, edgeMs: 0, queueMs: 0 },
      edgeId: '',
    };
  }

  /** A stop waits for the frames in flight: the session holds its connection open. */
  holdClose(until: Promise<void>): void {
    this.session.holdClose?.(until);
  }

  /** Send a frame (v1 bytes, as the uplink keeps it): as v2 when it can go so. */
  publishFrame(frame: Buffer, onError: (err: Error) => void): void {
    let f: Frame;
    try {
      f = decodeFrame(frame);
    } catch (e) {
      if (!(e instanceof FrameError)) throw e;
      onError(e);
      return;
    }
    if (this.sent.size >= MAX_SENT) this.sent.delete(this.sent.keys().next().value!);
    const now = Date.now();
    const kind = this.contexts.filter((x) => inContext(x, f));
    let c: Held | undefined;
    let entry: V2Entry | null = null;
    for (let i = kind.length - 1; i >= 0 && !entry; i--) {
      c = kind[i]!;
      entry = c.acked ? entryOf(c, f, now) : null;
    }
    if (!c || !entry) {
      this.sent.set(f.frameId, { frame, meta: f, ctx: null });
      if (this.batch) this.flushBatch();
      this.publish(this.o.topics.features, frame, f.frameId, onError);
      this.counts.v1++;
      this.ensureContext(f, kind);
      return;
    }
    this.sent.set(f.frameId, { frame, meta: f, ctx: c.ctx });
    const b = this.o.batch;
    if (!b || entry.tag !== undefined) {
      if (this.batch) this.flushBatch();
      this.publish(this.o.topics.f, Buffer.from(encodeV2(c.ctx, entry)), f.frameId, onError);
      this.counts.v2++;
      return;
    }
    if (this.batch && this.batch.ctx !== c.ctx) this.flushBatch();
    if (!this.batch) {
      const timer = setTimeout(() => this.flushBatch(), b.maxDelayMs);
      this.batch = { ctx: c.ctx, entries: [], timer };
    }
    this.batch.entries.push(entry);
    if (this.batch.entries.length >= Math.min(b.maxFrames, V2_MAX_BATCH)) this.flushBatch();
  }

  private flushBatch(): void {
    const b = this.batch;
    if (!b) return;
    this.batch = null;
    clearTimeout(b.timer);
    const bytes =
      b.entries.length === 1 ? encodeV2(b.ctx, b.entries[0]!) : encodeV2Batch(b.ctx, b.entries);
    this.counts.v2 += b.entries.length;
    this.counts.batches++;
    this.publish(this.o.topics.f, Buffer.from(bytes), null);
  }

  private publish(
    topic: string,
    payload: Buffer,
    frameId: number | null,
    onError?: (err: Error) => void,
  ): void {
    this.session.publish(topic, payload, { qos: 1 }).catch((err: Error) => {
      if (onError) onError(err);
      else log.warn({ device: this.o.deviceId, frameId, err: err.message }, 'publish failed');
    });
  }

  /** Announce a context for the kind of `f` (`kind`: the contexts of that kind held)
   * unless one is on its way, or the newest still reaches frames after this one. */
  private ensureContext(f: Frame, kind: Held[]): void {
    if (this.conn === null) return;
    if (kind.some((x) => !x.acked)) return; // announced, not yet acknowledged
    // an older frame (restored from the outbox, or captured long ago) goes as v1 alone;
    // a context is made again only when the ids ran past the newest one's reach
    const newest = kind.at(-1);
    const ahead = newest ? (f.frameId - newest.frameBase) >>> 0 : 0;
    if (newest && (ahead <= V2_MAX_SEQ || ahead >= 0x8000_0000)) return;
    const context: StreamContext = {
      ctx: this.nextCtx,
      modelId: f.modelId,
      modelVersion: f.modelVersion,
      codecId: f.codecId,
      codecVersion: f.codecVersion,
      point: f.point,
      shape: [...f.shape],
      frameBase: f.frameId,
    };
    const id = this.nextId++;
    this.nextCtx = (this.nextCtx + 1) & 0xff;
    this.contexts.push({ ...context, id, acked: false });
    if (this.contexts.length > MAX_CONTEXTS) this.contexts.shift();
    this.announce({ id, context });
  }
}
