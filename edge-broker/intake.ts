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
import { errorMessage, parseError, parseResult, type ErrorCode } from '../core/wire/messages.js';
import { deviceFilter, deviceTopic, parseTopic } from '../core/wire/topics.js';
import { AnswerCache, frameKey } from './answers.js';
import { subscribe, type EdgeBroker } from './broker.js';
import type { EdgeBus, Part } from './bus.js';
import { clusterOf, fromThisNode } from './cluster.js';
import { DecodeFailure, FrameChecker } from './decode/decoder.js';
import { DecoderPool, type PoolOptions } from './decode/pool.js';

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
}

type Counts = Omit<EdgeStats, 'backlog'>;

export class Intake implements Part {
  readonly name = 'intake';
  private readonly counts: Counts = { received: 0, results: 0, errors: 0, duplicates: 0 };
  private readonly answers = new AnswerCache(DEDUPE_MS, DEDUPE_MAX);
  private readonly checker: FrameChecker;
  private decoders: DecoderPool | null = null;
  private unsubscribe: (() => Promise<void>) | null = null;
  private offBus: (() => void) | null = null;
  private offBusBack: (() => void) | null = null;
  private replayTimer: NodeJS.Timeout | null = null;
  private replayFrom: number | null = null;
  private replayed = 0;

  constructor(private readonly o: IntakeOptions) {
    this.checker = new FrameChecker(o.bundles);
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
    this.unsubscribe = await subscribe(
      o.broker,
      deviceFilter('features', o.fleet, o.base),
      (p, b) => this.onFrame(p, b),
    );
  }

  async stop(): Promise<void> {
    this.offBus?.();
    this.offBusBack?.();
    if (this.replayTimer) clearTimeout(this.replayTimer);
    // frames keep coming until the broker closes: the pool answers what it holds and
    // refuses the rest with an error (a frame taken after unsubscribing would be lost)
    await this.decoders?.close();
    await this.unsubscribe?.();
  }

  private onFrame(packet: AedesPublishPacket, payload: Buffer): void {
    const { o } = this;
    // in a cluster every node sees every frame: the device's own node decodes it
    if (!fromThisNode(o.broker.aedes, packet)) return;
    const now = Date.now();
    const t = parseTopic(packet.topic, o.base);
    if (!t || t.kind !== 'device') return;
    const { fleet, deviceId } = t;
    this.counts.received++;
    o.bus.emit('frameReceived', { fleet, deviceId, bytes: payload.length, at: now });
    let frame;
    try {
      frame = this.checker.parse(payload, now);
    } catch (e) {
      const f = DecodeFailure.from(e, 'malformed-frame', null);
      this.refuse(null, fleet, deviceId, f.frameId, f.code, f.message);
      return;
    }
    const key = frameKey(fleet, deviceId, frame.frameId);
    const prior = this.answers.seen(key, now);
    if (prior) {
      this.counts.duplicates++;
      if (prior.answer)
        background(o.broker.publish(prior.answer.topic, prior.answer.payload), 'answer');
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
        this.answer(key, deviceTopic(fleet, deviceId, 'result', o.base), result);
      },
    });
    if (!ok) {
      this.answers.forget(key); // a refused frame may come again for a real try
      const why = pool.closing ? 'edge stopping' : `decoder queue full (${pool.maxQueue} frames)`;
      this.refuse(null, fleet, deviceId, frame.frameId, 'overloaded', why);
    }
  }

  /** The bus is back after a loss seen at `lostAt`: publish the answers given since
   * shortly before it again, once the other nodes are back too. */
  private replayAfter(lostAt: number): void {
    const from = lostAt - REPLAY_BEFORE_MS;
    this.replayFrom = Math.min(this.replayFrom ?? from, from);
    if (this.replayTimer) clearTimeout(this.replayTimer);
    this.replayTimer = setTimeout(() => {
      this.replayTimer = null;
      const since = this.replayFrom ?? from;
      this.replayFrom = null;
      const answers = this.answers.givenSince(since);
      this.replayed += answers.length;
      log.info({ answers: answers.length, since }, 'answers published again after redis');
      for (const a of answers) background(this.o.broker.publish(a.topic, a.payload), 'answer');
    }, REPLAY_SETTLE_MS);
  }

  /** Publish the answer to a frame, remembered for redeliveries when `key` is given. */
  private answer(key: string | null, topic: string, body: unknown): void {
    const payload = Buffer.from(JSON.stringify(body));
    if (key) this.answers.answer(key, { topic, payload });
    background(this.o.broker.publish(topic, payload), 'answer');
  }

  private refuse(
    key: string | null,
    fleet: string,
    deviceId: string,
    frameId: number | null,
    code: ErrorCode,
    reason: string,
  ): void {
    const { o } = this;
    this.counts.errors++;
    o.bus.emit('frameError', { fleet, deviceId, frameId, code });
    log.debug({ deviceId, frameId, code, reason }, 'frame error');
    const msg = errorMessage(deviceId, frameId, code, reason, o.edgeId);
    this.answer(key, deviceTopic(fleet, deviceId, 'error', o.base), msg);
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
