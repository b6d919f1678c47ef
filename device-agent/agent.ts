/**
 * `splitfleet agent`: one device. Reads frames from a source, runs the head and the
 * codec, publishes frames at QoS 1, listens for its own results and errors, and
 * measures end-to-end latency (capture -> result received).
 *
 * The agent is a composition of parts that talk through its event bus (bus.ts), each the
 * one owner of its state:
 *   session.ts  the MQTT connection: backoff, subscriptions, presence (birth, will, death)
 *   uplink.ts   frames from acceptance to answer: the window, re-sends, the outbox
 *   config.ts   the settings in force, and the edge's configs applied live
 *   head.ts     the head pipeline, swapped between encodes
 *   adapt.ts    the operating point picked for a latency goal (rate.ts)
 *   ops.ts      the device's ops (ping, get-config, restart-pipeline)
 *   capture.ts  the loop: source -> head -> frame -> uplink
 *   stats.ts    the counters, from the events
 *   updater.ts  bundles fetched over the air
 */
import type { Bundle } from '../core/model/bundle.js';
import { ContextError, parseAnswerChannel } from '../core/wire/context.js';
import {
  batchProblem,
  parseError,
  topkProblem,
  type ErrorMessage,
  type ResultMessage,
} from '../core/wire/messages.js';
import { RESPONSE_QOS } from '../core/wire/rpc.js';
import {
  DEFAULT_BASE,
  deviceOpTopic,
  deviceTopic,
  parseOpTopic,
  type DeviceChannel,
} from '../core/wire/topics.js';
import type { EngineName } from '../core/engine/select.js';
import { log } from '../core/util/log.js';
import { AdaptivePoint } from './adapt.js';
import { Bus, type AgentEvent, type FrameEvent, type Listener } from './bus.js';
import { Capture } from './capture.js';
import { RuntimeConfig } from './config.js';
import { WireLink, type BatchOptions } from './context.js';
import { Head } from './head.js';
import { deviceOps } from './ops.js';
import type { OutboxOptions } from './outbox.js';
import { Session } from './session.js';
import type { AgentSettings } from './settings.js';
import type { SourceOptions } from './source.js';
import { recordStats, type AgentStats } from './stats.js';
import { BundleUpdater, type UpdaterOptions } from './updater.js';
import { Uplink } from './uplink.js';

export type { AgentStats } from './stats.js';
export type { AgentSettings } from './settings.js';
export type { AgentEvent, AgentEventMap, FrameEvent } from './bus.js';

export interface AgentOptions {
  /** The edge's broker URL; several, comma-separated (the nodes of a cluster): the agent
   * connects to the first and moves to the next whenever a connection is lost or fails. */
  url: string;
  fleet: string;
  deviceId: string;
  /** The settings it starts with (a config from the edge may change them: `settings`). */
  bundle: Bundle;
  codec: string;
  point: number;
  source: SourceOptions;
  base?: string;
  /** Frames per second; 0 sends as fast as the in-flight window allows. */
  fps?: number;
  /** Frames sent but not yet answered before the agent waits. */
  maxInFlight?: number;
  /** A frame without an answer after this long counts as lost. */
  resultTimeoutMs?: number;
  threads?: number;
  /** Inference engine of the head (core/engine/select.ts); a fleet config's `engine` wins. */
  engine?: EngineName;
  username?: string;
  password?: string;
  /** First wait before a reconnect (doubled after each failed attempt). */
  reconnectPeriodMs?: number;
  /** Loads the bundle a config names (model, codec); without it only configs the loaded
   * bundle can serve are applied. */
  resolveBundle?: (model: string, codec: string) => Promise<Bundle>;
  /** Certificates to trust for an `mqtts://` edge (a private CA or a self-signed edge). */
  ca?: Buffer;
  /** A persistent outbox (outbox.ts): accepted frames survive a lost link and a restart. */
  outbox?: OutboxOptions;
  /** Longest wait between two reconnect attempts (exponential backoff with jitter). */
  maxReconnectMs?: number;
  /** End-to-end latency goal: the agent picks the most accurate operating point that
   * meets it on its link (rate.ts); null or absent: the fixed `point`. */
  latencyGoalMs?: number | null;
  /** The edge's cap on the feature bit rate, kbit/s. */
  maxKbps?: number | null;
  /** Send each sample's name in its frame (a dashboard can show the image). */
  tagFrames?: boolean;
  /** A local bundle store: bundles a config names that the device does not have are
   * fetched from the edge over the air into it (updater.ts). */
  bundles?: UpdaterOptions;
  /** Wire format (docs/PROTOCOL.md): 'v1' (default) self-describing frames and full JSON
   * results; 'v2' lean frames in announced contexts and compact answers (an edge with
   * wire v2 only: an older edge, or a broker with share workers, never acknowledges it). */
  wire?: 'v1' | 'v2';
  /** Wire v2: several frames per PUBLISH, each waiting at most maxDelayMs (null: off). */
  batch?: BatchOptions | null;
  /** Wire v2: classes in each answer, 1..4 (default 1, the best). */
  topk?: number;
}

/** Listeners given at construction (`agent.on` adds more later). */
export interface AgentEvents {
  result?: (r: ResultMessage, latencyMs: number) => void;
  error?: (e: ErrorMessage) => void;
  /** A frame accepted for sending: its id and the sample it was made from. */
  frame?: (f: FrameEvent) => void;
}

export class Agent {
  readonly stats: AgentStats;
  /** Downloads of bundles over the air (null: no bundle store). */
  readonly updater: BundleUpdater | null;
  private readonly bus: Bus;
  private readonly session: Session;
  private readonly uplink: Uplink;
  private readonly config: RuntimeConfig;
  private readonly head: Head;
  private readonly adapt: AdaptivePoint;
  private readonly ops: (topic: string, payload: Buffer, retained: boolean) => void;
  private readonly capture: Capture;
  private readonly topics: Record<'result' | 'a' | 'error' | 'config' | 'chunk', string>;
  /** Wire v2's link (null: wire v1). */
  readonly wire: WireLink | null;
  private sweeper?: NodeJS.Timeout;

  constructor(
    readonly options: Readonly<AgentOptions>,
    events: AgentEvents = {},
  ) {
    const o = options;
    const base = o.base ?? DEFAULT_BASE;
    const bus = (this.bus = new Bus(o.deviceId));
    this.stats = recordStats(bus);
    if (events.result) bus.on('result', events.result);
    if (events.error) bus.on('error', events.error);
    if (events.frame) bus.on('frame', events.frame);

    const topic = (ch: DeviceChannel) => deviceTopic(o.fleet, o.deviceId, ch, base);
    const opTopic = (dir: 'request' | 'response', op: string) =>
      deviceOpTopic(o.fleet, o.deviceId, dir, op, base);
    this.topics = {
      result: topic('result'),
      a: topic('a'),
      error: topic('error'),
      config: topic('config'),
      chunk: topic('chunk'),
    };
    const v2 = o.wire === 'v2';
    const topk = o.topk ?? 1;
    const wrong = topkProblem(topk) ?? (o.batch ? batchProblem(o.batch) : null);
    if (wrong) throw new Error(wrong);
    // wire v2: the session's connections are told to the agent once the edge acknowledged
    // the session (context.ts); the answers come compact on `.../a`, not on `.../result`
    const sessionBus = v2 ? new Bus(o.deviceId) : bus;
    const listen: DeviceChannel[] = v2
      ? ['a', 'error', 'config', 'chunk']
      : ['result', 'error', 'config', 'chunk'];
    const answer = async (to: string, payload: string) => {
      await this.session
        .publish(to, payload, { qos: RESPONSE_QOS })
        .catch((e: Error) =>
          log.warn({ device: o.deviceId, topic: to, err: e.message }, 'response not sent'),
        );
    };
    const announce = () => this.session.announce();

    this.session = new Session(
      {
        url: o.url,
        fleet: o.fleet,
        deviceId: o.deviceId,
        base,
        username: o.username,
        password: o.password,
        ca: o.ca,
        reconnectPeriodMs: o.reconnectPeriodMs,
        maxReconnectMs: o.maxReconnectMs,
        offlineStart: o.outbox !== undefined,
        subscriptions: [...listen.map(topic), opTopic('request', '+')],
        // compact answers (and context acks) at QoS 0: an answer lost with its connection
        // comes again when the uplink re-sends the frame on the next one
        atMostOnce: v2 ? [topic('a')] : [],
      },
      sessionBus,
      () => {
        const { codec, point, configId } = this.config.settings;
        return { model: this.config.modelRef, codec, point, configId };
      },
      (t, payload, retained) => this.onMessage(t, payload, retained),
    );
    this.updater = o.bundles
      ? new BundleUpdater(o.bundles, (req) =>
          this.session.publish(topic('fetch'), JSON.stringify(req), { qos: 1 }),
        )
      : null;
    this.wire = v2
      ? new WireLink(
          {
            deviceId: o.deviceId,
            topics: { features: topic('features'), f: topic('f'), ctx: topic('ctx') },
            topk,
            batch: o.batch ?? null,
            describe: (f) => {
              const s = this.config.settings;
              const m = s.bundle.manifest;
              return m.modelId === f.modelId && m.version === f.modelVersion
                ? { model: m.name, codec: s.codec, labels: m.labels }
                : { model: String(f.modelId), codec: String(f.codecId), labels: [] };
            },
          },
          this.session,
          bus,
        )
      : null;
    if (this.wire) {
      const wire = this.wire;
      sessionBus.on('online', (conn) => wire.online(conn));
      sessionBus.on('offline', () => {
        wire.offline();
        bus.emit('offline');
      });
      sessionBus.on('reconnecting', () => bus.emit('reconnecting'));
    }
    this.uplink = new Uplink(o, bus, this.wire ?? this.session);
    this.head = new Head(o.threads ?? 1);
    this.config = new RuntimeConfig(
      {
        bundle: o.bundle,
        codec: o.codec,
        point: o.point,
        fps: o.fps ?? 0,
        latencyGoalMs: o.latencyGoalMs ?? null,
        maxKbps: o.maxKbps ?? null,
        engine: o.engine ?? 'auto',
        configId: null,
      },
      {
        deviceId: o.deviceId,
        source: o.source.source,
        head: this.head,
        bus,
        resolveBundle: o.resolveBundle,
        updater: this.updater,
        answer: (body) => answer(opTopic('response', 'config'), body),
        announce,
        wire: v2 ? 'v2' : 'v1',
        link: this.wire,
      },
    );
    this.adapt = new AdaptivePoint({
      deviceId: o.deviceId,
      bus,
      config: this.config,
      head: this.head,
      connection: () => this.session.connection,
      inFlight: () => this.uplink.inFlight(),
      announce,
    });
    this.ops = deviceOps({
      deviceId: o.deviceId,
      base,
      source: o.source.source,
      config: this.config,
      head: this.head,
      pending: () => this.uplink.size,
      publish: answer,
    });
    this.capture = new Capture({
      deviceId: o.deviceId,
      source: { ...o.source, ca: o.source.ca ?? o.ca },
      bus,
      head: this.head,
      uplink: this.uplink,
      fps: () => this.config.settings.fps,
      tagFrames: o.tagFrames ?? false,
      wire: o.wire ?? 'v1',
    });
  }

  get deviceId(): string {
    return this.options.deviceId;
  }

  /** The settings in force (start-up options, then the edge's configs and the rate
   * controller's point): a read-only snapshot. */
  get settings(): Readonly<AgentSettings> {
    return this.config.settings;
  }

  /** Listen to an event of the agent (bus.ts); returns the function that stops it. */
  on<E extends AgentEvent>(event: E, fn: Listener<E>): () => void {
    return this.bus.on(event, fn);
  }

  /** Load the head, restore the outbox, connect and announce birth; resolves once
   * connected (with an outbox: also when the edge cannot be reached). */
  async start(): Promise<void> {
    await this.head.start(this.config.settings);
    try {
      this.adapt.configure();
      await this.uplink.start();
      await this.session.start();
    } catch (e) {
      await this.head.stop(); // a refused login, an unreadable outbox: nothing left running
      throw e;
    }
    this.sweeper = setInterval(() => {
      this.adapt.tick();
      this.uplink.sweep();
    }, 500);
  }

  private onMessage(topic: string, payload: Buffer, retained: boolean): void {
    const t = this.topics;
    if (topic === t.result) this.uplink.onResult(payload);
    else if (topic === t.a) this.onAnswer(payload);
    else if (topic === t.error) {
      const e = this.wire && parseError(payload);
      if (!e || !this.wire?.onError(e)) this.uplink.onError(payload);
    } else if (topic === t.chunk) this.updater?.onChunk(payload);
    else if (topic === t.config) this.config.onMessage(payload);
    else {
      const op = parseOpTopic(topic, this.options.base ?? DEFAULT_BASE);
      if (op?.kind === 'device' && op.id === this.options.deviceId) {
        this.ops(topic, payload, retained);
      }
    }
  }

  /** A message of `.../a` (wire v2): an ack of an announce, or a compact answer. */
  private onAnswer(payload: Buffer): void {
    if (!this.wire) return;
    let m;
    try {
      m = parseAnswerChannel(payload);
    } catch (e) {
      if (!(e instanceof ContextError)) throw e;
      log.warn({ device: this.options.deviceId, err: e.message }, 'bad answer dropped');
      return;
    }
    if (m.kind === 'ack') return this.wire.onAck(m.ack);
    const r = this.wire.resultOf(m.answer);
    if (r) this.uplink.onResult(Buffer.from(JSON.stringify(r)));
  }

  /** Stream the source until it ends (or stop()), then wait for the answers. */
  async run(): Promise<AgentStats> {
    const started = performance.now();
    await this.capture.run();
    await this.uplink.drained();
    this.stats.elapsedMs = performance.now() - started;
    return this.stats;
  }

  /** Stop sending; pending frames still wait for their answers unless `now` (frames in
   * an outbox are not lost: the next start sends them). */
  async stop(now = false): Promise<void> {
    this.capture.stop();
    // a graceful stop lets the frame being encoded reach the uplink first, which then
    // waits for its answer with the others in flight
    if (!now) await this.capture.idle();
    this.updater?.close();
    this.uplink.stop(now);
    this.wire?.stop();
    clearInterval(this.sweeper);
    await this.session.stop();
    await this.head.stop();
  }
}
