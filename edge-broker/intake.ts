/**
 * The edge's intake: feature frames in, answers out.
 *
 * Features arrive on <base>/<fleet>/device/<id>/features. Each frame is checked on
 * receipt (a bad one gets an error at once), queued for a decoder process (decode/pool.ts),
 * and its result is published on .../result, or an error on .../error. QoS 1 redeliveries
 * and re-sends of a frame id already seen from that device are collapsed: the frame is
 * decoded once and a redelivery of an answered frame gets the same answer again
 * (answers.ts). In a cluster, the answers other nodes gave are remembered the same way
 * (ClusterAnswers below), so a device that moves here is not answered twice.
 *
 * Every frame, result and error is told on the bus (bus.ts): presence counts them,
 * rollouts read their health from them.
 *
 * In a cluster, answers travel through Redis pub/sub, which delivers at most once: when
 * Redis restarts, an answer in flight, or one published before another node's
 * subscriptions are back, is lost to the subscribers of the other nodes (and may be to
 * this node's too). So when this node's bus returns (cluster.ts), it waits a moment for
 * the other nodes' to return too and publishes again every answer it gave from shortly
 * before the loss until then: a subscriber may see such an answer twice (same frame id).
 */
import type { AedesPublishPacket } from 'aedes';
import type { Bundle } from '../core/model/bundle.js';
import { background, log } from '../core/util/log.js';
import {
  ContextError,
  encodeAck,
  encodeCompactAnswer,
  parseAnnounce,
} from '../core/wire/context.js';
import { decodeV2, frameOf } from '../core/wire/frame-v2.js';
import { MAX_PAYLOAD_BYTES, type Frame } from '../core/wire/frame.js';
import {
  errorMessage,
  parseError,
  parseResult,
  type ErrorCode,
  type ResultMessage,
} from '../core/wire/messages.js';
import { deviceFilter, deviceTopic, parseTopic } from '../core/wire/topics.js';
import { AnswerCache, ReplayWindow, frameKey, type Answer } from './answers.js';
import { onClientPublish, subscribe, type EdgeBroker } from './broker.js';
import type { EdgeBus, Part } from './bus.js';
import { clusterOf, fromThisNode } from './cluster.js';
import { DecodeFailure, FrameChecker } from './decode/decoder.js';
import { DecoderPool, type PoolOptions } from './decode/pool.js';
import { WireSessions } from './contexts.js';

export interface EdgeStats {
  received: number;
  results: number;
  errors: number;
  duplicates: number;
  backlog: number;
}

/** Answers are remembered this long, and at most this many. */
const DEDUPE_MS = 120_000;
const DEDUPE_MAX = 50_000;
/** After Redis was lost, the answers given from this long before the loss was seen are
 * published again (the loss is seen at once when Redis' socket closes; what Redis took
 * just before may never have reached the subscribers). */
export const REPLAY_BEFORE_MS = 2000;
/** ...once this long has passed since this node's bus returned: the other nodes reconnect
 * to Redis every 200 ms, so by then their subscriptions are back too. */
export const REPLAY_SETTLE_MS = 1000;

export interface IntakeOptions {
  broker: EdgeBroker;
  bus: EdgeBus;
  edgeId: string;
  base: string;
  /** The fleet whose frames are taken; '+': every fleet. */
  fleet: string;
  /** Every bundle decoded (released and staged). */
  bundles: readonly Bundle[];
  /** The decoder processes and their queue. */
  decoders: Omit<PoolOptions, 'bundles' | 'edgeId'>;
  /** Publish each result in full (JSON on `.../result`) for dashboards and subscribers
   * also when its device takes compact answers (default true; a device that never
   * announced a wire v2 session always gets the full result). A function is asked at each
   * answer (a fleet file's `edge.fullResults`, which may change while the edge runs). */
  fullResults?: boolean | (() => boolean);
  /** Largest frame payload taken (bytes; default 1 MiB); a frame may be 256 B more. */
  maxFrameBytes?: number;
}

type Counts = Omit<EdgeStats, 'backlog'>;
type Packet = AedesPublishPacket;

/** The key of a device's wire v2 session. */
const deviceKey = (fleet: string, deviceId: string) => `${fleet}/${deviceId}`;

/** The `id` of an announce that failed its checks, when it has one (else 0). */
function idOf(payload: Buffer): number {
  try {
    const v: unknown = JSON.parse(payload.subarray(0, 4096).toString());
    const id = typeof v === 'object' && v !== null && 'id' in v ? v.id : undefined;
    return typeof id === 'number' && Number.isInteger(id) && id >= 0 && id <= 0xffff_ffff ? id : 0;
  } catch {
    return 0;
  }
}

export class Intake implements Part {
  readonly name = 'intake';
  private readonly counts: Counts = { received: 0, results: 0, errors: 0, duplicates: 0 };
  private readonly answers = new AnswerCache(DEDUPE_MS, DEDUPE_MAX);
  private readonly checker: FrameChecker;
  private readonly sessions = new WireSessions();
  private readonly ends: (() => Promise<void>)[] = [];
  private decoders: DecoderPool | null = null;
  private offBus: (() => void) | null = null;
  private offBusBack: (() => void) | null = null;
  private offStatus: (() => void) | null = null;
  private replayTimer: NodeJS.Timeout | null = null;
  private readonly replay = new ReplayWindow(REPLAY_BEFORE_MS);
  private replayed = 0;

  constructor(private readonly o: IntakeOptions) {
    this.checker = new FrameChecker(o.bundles, o.maxFrameBytes ?? MAX_PAYLOAD_BYTES);
  }

  /** The decoder processes and their queue (once started). */
  get pool(): DecoderPool {
    if (!this.decoders) throw new Error('the intake has not started');
    return this.decoders;
  }

  get backlog(): number {
    return this.decoders?.backlog ?? 0;
  }

  stats(): EdgeStats {
    return { ...this.counts, backlog: this.backlog };
  }

  /** Answers published again after the cluster's bus came back. */
  get republished(): number {
    return this.replayed;
  }

  async start(): Promise<void> {
    const { o } = this;
    this.offBus = o.bus.on('clusterAnswer', (a) =>
      this.answers.remember(frameKey(a.fleet, a.deviceId, a.frameId), a.answer, Date.now()),
    );
    this.offBusBack =
      clusterOf(o.broker.aedes)?.onBusBack((lostAt) => this.replayAfter(lostAt)) ?? null;
    this.decoders = await DecoderPool.start({
      ...o.decoders,
      bundles: o.bundles,
      edgeId: o.edgeId,
    });
    this.offStatus = o.bus.on('deviceStatus', (e) => {
      // a new connection starts without a session: a v1 agent gets full results again
      if (e.status.state === 'online')
        this.sessions.born(deviceKey(e.fleet, e.deviceId), e.status.ts);
    });
    // in a cluster a node takes the frames of its own devices as they are published, not
    // back from Redis: a frame Redis dropped in a restart would never be answered
    const handlers: Record<'ctx' | 'features' | 'f', (p: Packet, b: Buffer) => void> = {
      ctx: (p, b) => this.onAnnounce(p, b),
      features: (p, b) => this.onFrame(p, b),
      f: (p, b) => this.onV2(p, b),
    };
    if (clusterOf(o.broker.aedes)?.mode === 'cluster') {
      // one listener for every message a client of this node publishes: its topic is
      // read once, and the channel picks the handler
      const off = onClientPublish(o.broker, (p, b) => {
        const t = parseTopic(p.topic, o.base);
        if (t?.kind !== 'device' || (o.fleet !== '+' && t.fleet !== o.fleet)) return;
        if (t.channel === 'ctx' || t.channel === 'features' || t.channel === 'f')
          handlers[t.channel](p, b);
      });
      this.ends.push(() => Promise.resolve(off()));
      return;
    }
    for (const ch of ['ctx', 'features', 'f'] as const)
      this.ends.push(await subscribe(o.broker, deviceFilter(ch, o.fleet, o.base), handlers[ch]));
  }

  async stop(): Promise<void> {
    this.offBus?.();
    this.offBusBack?.();
    this.offStatus?.();
    if (this.replayTimer) clearTimeout(this.replayTimer);
    // frames keep coming until the broker closes: the pool answers what it holds and
    // refuses the rest with an error (a frame taken after unsubscribing would be lost)
    await this.decoders?.close();
    for (let end = this.ends.pop(); end; end = this.ends.pop()) await end();
  }

  /** The device a packet of ours came from (frames and announces of this node only). */
  private source(packet: Packet): { fleet: string; deviceId: string } | undefined {
    // in a cluster every node sees every frame: the device's own node decodes it
    if (!fromThisNode(this.o.broker.aedes, packet)) return undefined;
    const t = parseTopic(packet.topic, this.o.base);
    return t?.kind === 'device' ? t : undefined;
  }

  /** A v1 frame on `.../features`. */
  private onFrame(packet: Packet, payload: Buffer): void {
    const src = this.source(packet);
    if (!src) return;
    const { fleet, deviceId } = src;
    const now = Date.now();
    this.counts.received++;
    this.o.bus.emit('frameReceived', { fleet, deviceId, bytes: payload.length, at: now });
    let frame;
    try {
      frame = this.checker.parse(payload, now);
    } catch (e) {
      const f = DecodeFailure.from(e, 'malformed-frame', null);
      this.refuse(null, fleet, deviceId, f.frameId, f.code, f.message);
      return;
    }
    this.take(fleet, deviceId, frame, now);
  }

  /** A wire v2 packet on `.../f`: one frame or a batch, of a context the device announced. */
  private onV2(packet: Packet, payload: Buffer): void {
    const src = this.source(packet);
    if (!src) return;
    const { fleet, deviceId } = src;
    const now = Date.now();
    let v2;
    try {
      v2 = decodeV2(payload, this.checker.maxPayloadBytes + 256);
    } catch (e) {
      this.counts.received++;
      this.o.bus.emit('frameReceived', { fleet, deviceId, bytes: payload.length, at: now });
      const f = DecodeFailure.from(e, 'malformed-frame', null);
      this.refuse(null, fleet, deviceId, null, f.code, f.message);
      return;
    }
    const n = v2.entries.length;
    const bytes = Math.round(payload.length / n);
    for (let i = 0; i < n; i++) {
      this.counts.received++;
      this.o.bus.emit('frameReceived', { fleet, deviceId, bytes, at: now });
    }
    const c = this.sessions.context(deviceKey(fleet, deviceId), v2.ctx);
    if (!c) {
      const why = `unknown context ${v2.ctx}: announce it again (${n} frame(s) not taken)`;
      this.refuse(null, fleet, deviceId, null, 'unknown-context', why, v2.ctx);
      return;
    }
    for (const e of v2.entries) {
      let frame;
      try {
        frame = this.checker.check(frameOf(c, e, now - c.offsetMs));
      } catch (err) {
        const f = DecodeFailure.from(err, 'malformed-frame', null);
        this.refuse(null, fleet, deviceId, f.frameId, f.code, f.message);
        continue;
      }
      this.take(fleet, deviceId, frame, now);
    }
  }

  /** A device's wire v2 announce on `.../ctx`: checked, kept, acknowledged on `.../a`. */
  private onAnnounce(packet: Packet, payload: Buffer): void {
    const src = this.source(packet);
    if (!src) return;
    const { fleet, deviceId } = src;
    const to = deviceTopic(fleet, deviceId, 'a', this.o.base);
    let a;
    try {
      a = parseAnnounce(payload);
      if (a.context) {
        const c = a.context;
        this.checker.check({ ...c, frameId: c.frameBase, captureTs: 0, payload: new Uint8Array() });
      }
    } catch (e) {
      if (!(e instanceof ContextError) && !(e instanceof DecodeFailure)) throw e;
      // the id is echoed when it can be read, so the device knows which announce failed
      const id = a?.id ?? idOf(payload);
      log.debug({ deviceId, err: e.message }, 'context refused');
      background(this.o.broker.publish(to, encodeAck({ id, ok: false, reason: e.message })), 'ack');
      return;
    }
    this.sessions.announce(deviceKey(fleet, deviceId), a, Date.now());
    background(this.o.broker.publish(to, encodeAck({ id: a.id, ok: true })), 'ack');
  }

  /** A checked frame: answered again when seen before, else queued for a decoder. */
  private take(fleet: string, deviceId: string, frame: Frame, now: number): void {
    const { o } = this;
    const key = frameKey(fleet, deviceId, frame.frameId);
    const prior = this.answers.seen(key, now);
    if (prior) {
      this.counts.duplicates++;
      for (const a of this.again(fleet, deviceId, prior.answers ?? []))
        background(o.broker.publish(a.topic, a.payload), 'answer');
      return;
    }
    const pool = this.pool;
    const ok = pool.submit({
      deviceId,
      frame,
      receivedAt: now,
      done: (err, result) => {
        if (err || !result) {
          const f = DecodeFailure.from(err, 'inference-failed', frame.frameId);
          this.refuse(key, fleet, deviceId, f.frameId, f.code, f.message);
          return;
        }
        this.counts.results++;
        o.bus.emit('result', { fleet, deviceId, result });
        this.publishResult(key, fleet, deviceId, result);
      },
    });
    if (!ok) {
      this.answers.forget(key); // a refused frame may come again for a real try
      const why = pool.closing ? 'edge stopping' : `decoder queue full (${pool.maxQueue} frames)`;
      this.refuse(null, fleet, deviceId, frame.frameId, 'overloaded', why);
    }
  }

  /** The answers to publish again for a frame seen before: a device that takes compact
   * answers gets one made from the full result when only that is known (another node of
   * a cluster answered it). */
  private again(fleet: string, deviceId: string, answers: Answer[]): Answer[] {
    const mode = this.sessions.mode(deviceKey(fleet, deviceId));
    if (mode?.answers !== 'compact' || answers.some((a) => a.topic.endsWith('/a'))) return answers;
    const full = answers.find((a) => a.topic.endsWith('/result'));
    const r = full && parseResult(full.payload);
    return r ? [...answers, this.compact(fleet, deviceId, r, mode.topk)] : answers;
  }

  private compact(fleet: string, deviceId: string, r: ResultMessage, topk: number): Answer {
    const more = r.topk.slice(1, topk).map((t) => ({ classIndex: t.classIndex, score: t.score }));
    const answer = { frameId: r.frameId, classIndex: r.classIndex, score: r.score };
    return {
      topic: deviceTopic(fleet, deviceId, 'a', this.o.base),
      payload: encodeCompactAnswer(more.length ? { ...answer, more } : answer),
    };
  }

  /** A result: compact on `.../a` to a device that asked for it, in full on `.../result`
   * unless that device takes compact answers and full results are off. */
  private publishResult(key: string, fleet: string, deviceId: string, r: ResultMessage): void {
    const { o } = this;
    const mode = this.sessions.mode(deviceKey(fleet, deviceId));
    const out: Answer[] = [];
    if (mode?.answers === 'compact') out.push(this.compact(fleet, deviceId, r, mode.topk));
    const full = typeof o.fullResults === 'function' ? o.fullResults() : (o.fullResults ?? true);
    if (mode?.answers !== 'compact' || full) {
      out.push({
        topic: deviceTopic(fleet, deviceId, 'result', o.base),
        payload: Buffer.from(JSON.stringify(r)),
      });
    }
    this.answers.answer(key, out);
    for (const a of out) background(o.broker.publish(a.topic, a.payload), 'answer');
  }

  /** The bus is back after a loss seen at `lostAt`: publish the answers given since
   * shortly before it again, once the other nodes are back too. */
  private replayAfter(lostAt: number): void {
    this.replay.lost(lostAt);
    if (this.replayTimer) clearTimeout(this.replayTimer);
    this.replayTimer = setTimeout(() => {
      this.replayTimer = null;
      const since = this.replay.take(Date.now());
      if (since === null) return;
      const answers = this.answers.givenSince(since);
      this.replayed += answers.length;
      log.info({ answers: answers.length, since }, 'answers published again after redis');
      for (const a of answers) background(this.o.broker.publish(a.topic, a.payload), 'answer');
    }, REPLAY_SETTLE_MS);
  }

  private refuse(
    key: string | null,
    fleet: string,
    deviceId: string,
    frameId: number | null,
    code: ErrorCode,
    reason: string,
    context?: number,
  ): void {
    const { o } = this;
    this.counts.errors++;
    o.bus.emit('frameError', { fleet, deviceId, frameId, code });
    log.debug({ deviceId, frameId, code, reason }, 'frame error');
    const msg = errorMessage(deviceId, frameId, code, reason, o.edgeId, context);
    const a = {
      topic: deviceTopic(fleet, deviceId, 'error', o.base),
      payload: Buffer.from(JSON.stringify(msg)),
    };
    if (key) this.answers.answer(key, [a]);
    background(o.broker.publish(a.topic, a.payload), 'answer');
  }
}

export interface ClusterAnswersOptions {
  broker: EdgeBroker;
  bus: EdgeBus;
  base: string;
  fleet: string;
}

/**
 * A cluster (cluster.ts): the answers other nodes give are told on the bus, so the intake
 * keeps them as its own (a device that moves here and re-sends an answered frame gets that
 * answer, not a second decode) and rollouts, run on one node, see the whole fleet's results.
 */
export class ClusterAnswers implements Part {
  readonly name = 'cluster answers';
  private readonly ends: (() => Promise<void>)[] = [];
  /** Answers already told: one published again after a Redis restart is told once. */
  private readonly told = new AnswerCache(DEDUPE_MS, DEDUPE_MAX);

  constructor(private readonly o: ClusterAnswersOptions) {}

  async start(): Promise<void> {
    const { o } = this;
    for (const channel of ['result', 'error'] as const) {
      this.ends.push(
        await subscribe(o.broker, deviceFilter(channel, o.fleet, o.base), (packet, payload) => {
          if (fromThisNode(o.broker.aedes, packet)) return;
          const t = parseTopic(packet.topic, o.base);
          if (!t || t.kind !== 'device') return;
          const result = t.channel === 'result' ? (parseResult(payload) ?? null) : null;
          const error = result ? undefined : parseError(payload);
          const frameId = result?.frameId ?? error?.frameId;
          // a refusal for overload is not an answer: the frame may come again
          if (frameId === undefined || frameId === null || error?.code === 'overloaded') return;
          if (this.told.seen(frameKey(t.fleet, t.deviceId, frameId), Date.now())) return;
          o.bus.emit('clusterAnswer', {
            fleet: t.fleet,
            deviceId: t.deviceId,
            frameId,
            answer: { topic: packet.topic, payload },
            result,
          });
        }),
      );
    }
  }

  async stop(): Promise<void> {
    for (let end = this.ends.pop(); end; end = this.ends.pop()) await end();
  }
}
