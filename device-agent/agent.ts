/**
 * `splitfleet agent`: one device. Reads frames from a source, runs the head and the
 * codec, publishes frames at QoS 1, listens for its own results and errors, and
 * measures end-to-end latency (capture -> result received).
 *
 * Presence: a retained birth on `.../status` and the same message with
 * state 'offline' as the last will, both carrying a sequence number that grows with
 * every connection, so a late will from an old connection can be told from a live one.
 * mqtt.js reconnects after broker loss and re-sends unacknowledged QoS 1 frames.
 */
import { randomInt } from 'node:crypto';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import type { Sample } from '../core/data/cifar.js';
import type { Bundle } from '../core/model/bundle.js';
import {
  parseConfig,
  parseError,
  parseResult,
  type ConfigAck,
  type ConfigMessage,
  type OpResponse,
  type DeviceStatus,
  type ErrorMessage,
  type ResultMessage,
} from '../core/wire/messages.js';
import {
  DEFAULT_BASE,
  deviceClientId,
  deviceOpTopic,
  deviceTopic,
  parseOpTopic,
  type OpTopic,
} from '../core/wire/topics.js';
import { limitedLog, log } from '../core/util/log.js';
import { pushBounded } from '../core/util/stats.js';
import { parseEngineName, selectEngine, type EngineName } from '../core/engine/select.js';
import { HeadPipeline } from './pipeline.js';
import { frameSource, type SourceOptions } from './source.js';
import { Outbox, type OutboxOptions } from './outbox.js';
import { BundleUpdater, type UpdaterOptions } from './updater.js';
import { RateController, type RateDecision, type RatePoint } from './rate.js';
import { bundleRefString } from '../core/wire/ota.js';
import { encodeFrame } from '../core/wire/frame.js';

const CONNECT_TIMEOUT_MS = 10_000;

export interface AgentOptions {
  /** The edge's broker URL; several, comma-separated (the nodes of a cluster): the agent
   * connects to the first and moves to the next whenever a connection is lost or fails. */
  url: string;
  fleet: string;
  deviceId: string;
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
}

export interface AgentStats {
  sent: number;
  results: number;
  errors: number;
  lost: number;
  correct: number;
  labelled: number;
  /** Source images that could not be decoded, skipped and counted. */
  skipped: number;
  frameBytes: number;
  payloadBytes: number;
  /** The newest 100,000 end-to-end latencies and head times. */
  latenciesMs: number[];
  headMs: number[];
  reconnects: number;
  /** Frames the outbox dropped (drop-oldest, when full), and frames it restored at start. */
  dropped: number;
  restored: number;
  /** Wall time of run(), for the achieved frame rate. */
  elapsedMs: number;
  /** Operating-point changes made by the rate controller, newest last (at most 1000). */
  pointChanges: (RateDecision & { at: number })[];
}

interface Pending {
  /** Capture time: Unix ms for the frame, and the monotonic clock for latency. */
  capturedAt: number;
  t0: number;
  label: number | undefined;
  /** Kept until answered: re-sent after a reconnect (the edge collapses duplicates). */
  frame: Buffer;
  /** Connection number it was last published on; 0 = not yet. */
  sentOn: number;
  /** Monotonic time it was last published. */
  sentAt: number;
}

export interface AgentEvents {
  result?: (r: ResultMessage, latencyMs: number) => void;
  error?: (e: ErrorMessage) => void;
}

/** mqtt.js' `servers` (it takes the next one on every reconnect) from broker URLs. */
function servers(urls: string[]): NonNullable<IClientOptions['servers']> {
  return urls.map((u) => {
    const x = new URL(u);
    type Server = NonNullable<IClientOptions['servers']>[number];
    const protocol = x.protocol.slice(0, -1) as NonNullable<Server['protocol']>;
    const port = x.port ? Number(x.port) : protocol === 'mqtts' ? 8883 : 1883;
    return { host: x.hostname, port, protocol };
  });
}

export class Agent {
  readonly stats: AgentStats = {
    sent: 0,
    results: 0,
    errors: 0,
    lost: 0,
    correct: 0,
    labelled: 0,
    skipped: 0,
    frameBytes: 0,
    payloadBytes: 0,
    latenciesMs: [],
    headMs: [],
    reconnects: 0,
    dropped: 0,
    restored: 0,
    elapsedMs: 0,
    pointChanges: [],
  };
  private client!: MqttClient;
  private pipeline!: HeadPipeline;
  private readonly pending = new Map<number, Pending>();
  // Ids start high so every frame id costs the same 5 header bytes.
  private nextId = randomInt(0x1000_0000, 0x7fff_ffff);
  private seq = Date.now();
  /** The config it runs (null: its start-up options), and the serialization of every
   * use and swap of the head pipeline (a swap never closes a session mid-encode). */
  private configId: string | null = null;
  private pipeLock: Promise<unknown> = Promise.resolve();
  private configLock: Promise<unknown> = Promise.resolve();
  private stopping = false;
  private pipelineClosed = false;
  private waiters: (() => void)[] = [];
  private sweeper?: NodeJS.Timeout;
  /** Connections made so far, and whether the current one has its subscriptions. */
  private conn = 0;
  private ready = false;
  private readonly base: string;
  private outbox: Outbox | null = null;
  private attempts = 0;
  /** Downloads of bundles over the air (null: no bundle store). */
  readonly updater: BundleUpdater | null;
  /** Adaptive rate (null: a fixed point). */
  private rate: RateController | null = null;
  private switching = false;
  /** Bumped by every config applied: a rate switch started under an older one is dropped. */
  private configGen = 0;

  constructor(
    readonly opts: AgentOptions,
    private readonly events: AgentEvents = {},
  ) {
    this.base = opts.base ?? DEFAULT_BASE;
    this.updater = opts.bundles
      ? new BundleUpdater(opts.bundles, async (req) => {
          if (!this.client?.connected) throw new Error('not connected');
          await this.client.publishAsync(this.topic('fetch'), JSON.stringify(req), { qos: 1 });
        })
      : null;
  }

  private topic(ch: 'features' | 'result' | 'error' | 'status' | 'config' | 'fetch' | 'chunk') {
    return deviceTopic(this.opts.fleet, this.opts.deviceId, ch, this.base);
  }

  private opTopic(dir: 'request' | 'response', op: string) {
    return deviceOpTopic(this.opts.fleet, this.opts.deviceId, dir, op, this.base);
  }

  /** `name@version` of the bundle it runs. */
  private modelRef(): string {
    return bundleRefString(this.opts.bundle.manifest);
  }

  private async newPipeline(
    bundle: Bundle,
    codec: string,
    point: number,
    engineName: EngineName = this.opts.engine ?? 'auto',
  ): Promise<HeadPipeline> {
    const threads = this.opts.threads ?? 1;
    const { engine } = await selectEngine(engineName, threads); // logs a fallback
    return HeadPipeline.create(bundle, codec, point, { threads, engine });
  }

  private status(state: DeviceStatus['state']): Buffer {
    const s: DeviceStatus = {
      state,
      seq: this.seq,
      ts: Date.now(),
      model: this.modelRef(),
      codec: this.opts.codec,
      point: this.opts.point,
      configId: this.configId,
    };
    return Buffer.from(JSON.stringify(s));
  }

  /** Load the head, connect, announce birth; resolves once connected. */
  async start(): Promise<void> {
    this.pipeline = await this.newPipeline(this.opts.bundle, this.opts.codec, this.opts.point);
    this.configureRate();
    const options: IClientOptions = {
      clientId: deviceClientId(this.opts.fleet, this.opts.deviceId),
      clean: true,
      keepalive: 30,
      // mqtt.js reconnects; scheduleReconnect stretches its period (backoff with jitter)
      reconnectPeriod: this.opts.reconnectPeriodMs ?? 1000,
      connectTimeout: CONNECT_TIMEOUT_MS,
      protocolVersion: 4,
      // We subscribe ourselves on every connection, before any frame goes out, so no
      // result can come back before its subscription exists.
      resubscribe: false,
      will: { topic: this.topic('status'), payload: this.status('offline'), qos: 1, retain: true },
      ...(this.opts.username ? { username: this.opts.username, password: this.opts.password } : {}),
      ...(this.opts.ca ? { ca: this.opts.ca } : {}),
    };
    if (this.opts.outbox) {
      const { outbox, restored } = await Outbox.open(this.opts.outbox);
      this.outbox = outbox;
      const t0 = performance.now();
      for (const e of restored) {
        this.pending.set(e.frameId, { ...e, t0, sentOn: 0, sentAt: 0 });
      }
      this.stats.restored = restored.length;
      if (restored.length) {
        log.info({ device: this.opts.deviceId, frames: restored.length }, 'outbox restored');
      }
    }
    const urls = this.opts.url.split(',').map((u) => u.trim());
    const many = urls.length > 1 ? { servers: servers(urls) } : {};
    this.client = connect(urls[0]!, { ...options, ...many });
    let first: (() => void) | undefined;
    const firstReady = new Promise<void>((r) => (first = r));
    this.client.on('connect', () => {
      // No Nagle on TCP: a frame must not wait for the ACK of the previous one.
      const sock = this.client.stream as { setNoDelay?: (on: boolean) => void };
      sock.setNoDelay?.(true);
      const conn = ++this.conn;
      this.ready = false;
      this.client.publish(this.topic('status'), this.status('online'), { qos: 1, retain: true });
      this.client
        .subscribeAsync(
          [
            this.topic('result'),
            this.topic('error'),
            this.topic('config'),
            this.topic('chunk'),
            this.opTopic('request', '+'),
          ],
          { qos: 1 },
        )
        .then(() => {
          if (conn !== this.conn) return;
          this.ready = true;
          // Frames not yet sent on this connection (queued while offline, or sent on an
          // earlier one and unanswered) go now.
          this.attempts = 0;
          const resent = this.flush();
          if (resent) log.info({ device: this.opts.deviceId, resent }, 're-sent unanswered frames');
          first?.();
        })
        .catch((err: Error) =>
          log.warn({ device: this.opts.deviceId, err: err.message }, 'subscribe failed'),
        );
    });
    this.client.on('close', () => {
      this.ready = false;
      this.scheduleReconnect();
      // The next connection is a new session: new seq, and a will that names it.
      this.seq++;
      if (this.client.options.will) this.client.options.will.payload = this.status('offline');
    });
    this.client.on('reconnect', () => {
      this.stats.reconnects++;
      log.info({ device: this.opts.deviceId }, 'reconnecting');
    });
    this.client.on('error', (err) =>
      log.warn({ device: this.opts.deviceId, err: err.message }, 'mqtt error'),
    );
    this.client.on('message', (topic, payload, packet) => {
      try {
        this.onMessage(topic, payload, packet.retain);
      } catch (e) {
        // a bad message must never take the agent down (nor flood its log)
        limitedLog.warn(
          `dropped:${this.opts.deviceId}:${topic}`,
          { device: this.opts.deviceId, topic, err: String(e).slice(0, 1024) },
          'message dropped',
        );
      }
    });
    await new Promise<void>((resolve, reject) => {
      // with an outbox the agent works offline: only a refused login stops it
      const fatal = (e: Error) =>
        !this.outbox || /bad user ?name or password|not authori[sz]ed/i.test(e.message);
      const onErr = (e: Error) => {
        if (!fatal(e)) return;
        this.client.off('error', onErr);
        reject(e);
      };
      this.client.on('error', onErr);
      const done = () => {
        this.client.off('error', onErr);
        resolve();
      };
      firstReady.then(done, reject);
      if (this.outbox) setTimeout(done, 2000).unref();
    });
    this.sweeper = setInterval(() => this.sweep(), 500);
  }

  private onMessage(topic: string, payload: Buffer, retained = false): void {
    const now = performance.now();
    if (topic === this.topic('result')) {
      const r = parseResult(payload);
      const p = r && this.pending.get(r.frameId);
      if (!r || !p) return; // unknown, duplicate or already timed out
      this.pending.delete(r.frameId);
      this.forget(r.frameId);
      const latency = now - p.t0;
      this.rate?.answered(p.frame.length, p.sentAt, now, latency);
      this.stats.results++;
      pushBounded(this.stats.latenciesMs, latency);
      if (p.label !== undefined) {
        this.stats.labelled++;
        if (p.label === r.classIndex) this.stats.correct++;
      }
      this.events.result?.(r, latency);
      this.flush();
      this.wake();
    } else if (topic === this.topic('error')) {
      const e = parseError(payload);
      if (!e) return;
      if (e.frameId !== null) {
        if (!this.pending.delete(e.frameId)) return;
        this.forget(e.frameId);
      }
      this.stats.errors++;
      log.warn(
        { device: this.opts.deviceId, frameId: e.frameId, code: e.code, reason: e.reason },
        'edge error',
      );
      this.events.error?.(e);
      this.flush();
      this.wake();
    } else if (topic === this.topic('chunk')) {
      this.updater?.onChunk(payload);
    } else if (topic === this.topic('config')) {
      if (payload.length === 0) return; // retained config cleared: keep running as is
      const c = parseConfig(payload);
      // one config at a time, in the order they came
      const next = this.configLock.then(() =>
        c
          ? this.applyConfig(c)
          : this.respond('config', null, null, 'not a v1 config message', this.ack(null)),
      );
      this.configLock = next.catch(() => undefined);
    } else {
      const t = parseOpTopic(topic, this.base);
      if (!t || t.dir !== 'request') return;
      if (retained) {
        // a request is for now: a retained one would run again at every (re)start
        limitedLog.warn(
          `retained-request:${this.opts.deviceId}`,
          { device: this.opts.deviceId, topic },
          'retained request ignored',
        );
        return;
      }
      this.onRequest(t, payload).catch((e: unknown) =>
        limitedLog.warn(
          `request:${this.opts.deviceId}`,
          { device: this.opts.deviceId, op: t.op, err: String(e) },
          'request not answered',
        ),
      );
    }
  }

  /** Run `fn` on the head pipeline, after every earlier use or swap of it. */
  private withPipeline<T>(fn: (p: HeadPipeline) => Promise<T>): Promise<T> {
    const run = this.pipeLock.then(() => fn(this.pipeline));
    this.pipeLock = run.catch(() => undefined);
    return run;
  }

  /** Swap in a new head pipeline between two encodes, then close the old one. */
  private async swapPipeline(next: HeadPipeline): Promise<void> {
    await this.withPipeline(async (old) => {
      this.pipeline = next;
      await old.close();
    });
  }

  private ack(refused: string | null): ConfigAck {
    return { configId: this.configId, refused };
  }

  /** Apply a config without a restart, or refuse it with the reason and keep the old one. */
  private async applyConfig(c: ConfigMessage): Promise<void> {
    if (c.configId === this.configId) {
      // a redelivery of what runs: say so again (the edge may have lost the first answer)
      await this.respond('config', null, this.ack(null));
      return;
    }
    this.configGen++; // a point change in flight must not outlive this config
    const s = c.settings;
    try {
      if (c.device !== this.opts.deviceId) throw new Error(`config is for ${c.device}`);
      if (s.source !== this.opts.source.source) {
        throw new Error(
          `source ${JSON.stringify(s.source)} differs from ${JSON.stringify(this.opts.source.source)}; the source is set when the agent starts`,
        );
      }
      const engine = s.engine === undefined ? this.opts.engine : parseEngineName(s.engine);
      const bundle = await this.bundleFor(c);
      const same =
        bundle === this.opts.bundle &&
        s.codec === this.opts.codec &&
        s.point === this.opts.point &&
        (engine ?? 'auto') === (this.opts.engine ?? 'auto');
      if (!same) {
        await this.swapPipeline(await this.newPipeline(bundle, s.codec, s.point, engine));
      }
      Object.assign(this.opts, {
        bundle,
        codec: s.codec,
        point: s.point,
        fps: s.fps,
        latencyGoalMs: s.latencyGoalMs,
        maxKbps: s.maxKbps ?? null,
        engine,
      });
      this.configureRate();
      this.configId = c.configId;
      log.info({ device: this.opts.deviceId, configId: c.configId, ...s }, 'config applied');
      await this.respond('config', null, this.ack(null));
      await this.publishStatus();
    } catch (e) {
      const why = (e as Error).message;
      log.warn({ device: this.opts.deviceId, configId: c.configId, why }, 'config refused');
      await this.respond(
        'config',
        null,
        null,
        `config ${c.configId} refused: ${why}`,
        this.ack(c.configId),
      );
    }
  }

  /** (Re)build the rate controller for the bundle, codec and goal in force: it needs the
   * expected size and accuracy of every point, which a learned codec's manifest has. */
  private configureRate(): void {
    const goal = this.opts.latencyGoalMs ?? null;
    const m = this.opts.bundle.manifest;
    if (goal === null) {
      this.rate = null;
      return;
    }
    if (m.kind !== 'codec') {
      log.warn(
        { device: this.opts.deviceId, codec: this.opts.codec },
        "a latency goal needs a learned codec (its manifest has each point's size and accuracy): the fixed point is kept",
      );
      this.rate = null;
      return;
    }
    // a point's frame: its expected payload in this agent's frame (ids, shape, time)
    const frameBytes = (p: (typeof m.codec.points)[number]) =>
      encodeFrame({
        frameId: this.nextId,
        modelId: m.modelId,
        modelVersion: m.version,
        codecId: m.codec.id,
        codecVersion: m.codec.version,
        point: p.index,
        shape: p.symbolShape,
        captureTs: Date.now(),
        // the entropy coder's bits, plus rANS's 4-byte final state (core/codec/rans.ts)
        payload: new Uint8Array(
          Math.ceil(p.bitsPerImage / 8) + (m.codec.coding === 'rans' ? 4 : 0),
        ),
      }).byteLength;
    const points: RatePoint[] = m.codec.points.map((p) => ({
      point: p.index,
      label: p.label,
      bytes: frameBytes(p),
      top1: p.top1,
    }));
    this.rate = new RateController(
      { latencyGoalMs: goal, fps: this.opts.fps ?? 0, maxKbps: this.opts.maxKbps ?? null, points },
      this.opts.point,
    );
  }

  /** Ask the rate controller; switch the head to the point it picks (between encodes). */
  private adapt(): void {
    if (!this.rate || this.switching || !this.ready) return;
    const d = this.rate.decide(performance.now(), this.inFlight());
    if (!d) return;
    this.switching = true;
    const { bundle, codec } = this.opts;
    const gen = this.configGen;
    this.newPipeline(bundle, codec, d.to)
      .then(async (next) => {
        // a config applied while the head loaded wins
        if (gen !== this.configGen) return next.close();
        await this.swapPipeline(next);
        if (gen !== this.configGen) return; // the config's own head follows at once
        this.opts.point = d.to;
        pushBounded(this.stats.pointChanges, { ...d, at: Date.now() }, 1000);
        log.info({ device: this.opts.deviceId, ...d }, 'operating point changed');
        await this.publishStatus();
      })
      .catch((e: Error) =>
        log.warn({ device: this.opts.deviceId, err: e.message }, 'point change failed'),
      )
      .finally(() => (this.switching = false));
  }

  /** The bundle a config needs: the one running, a local one, or (when the config names a
   * bundle of the edge's registry the device lacks) one fetched over the air. A bundle
   * that fails verification throws here, so the config is refused and never activated. */
  private async bundleFor(c: ConfigMessage): Promise<Bundle> {
    const s = c.settings;
    const ref = c.bundle;
    if (!ref) {
      return this.opts.resolveBundle ? this.opts.resolveBundle(s.model, s.codec) : this.opts.bundle;
    }
    if (this.opts.bundle.manifestSha256 === ref.manifestSha256) return this.opts.bundle;
    const local = this.opts.resolveBundle
      ? await this.opts.resolveBundle(s.model, s.codec).catch(() => null)
      : null;
    if (local && local.manifestSha256 === ref.manifestSha256) return local;
    if (!this.updater) {
      throw new Error(
        `bundle ${bundleRefString(ref)} is not on this device and it has no bundle store to fetch it into (--bundle-dir)`,
      );
    }
    return this.updater.get(ref);
  }

  /** `.../request/<op>`: ping, get-config, restart-pipeline; answered on `.../response/<op>`
   * (the op as sent: an unknown or malformed one gets its error there too). */
  private async onRequest(t: OpTopic, payload: Buffer): Promise<void> {
    let id: string | null = null;
    const respond = (data: unknown, error: string | null = null) =>
      this.answerOn(t.respondOn, t.op, id, data, error);
    try {
      const body: unknown = payload.length ? JSON.parse(payload.toString('utf8')) : {};
      if (typeof body === 'object' && body !== null && 'id' in body)
        id = String((body as { id: unknown }).id).slice(0, 128);
    } catch {
      return respond(null, 'request body is not JSON');
    }
    try {
      switch (t.op) {
        case 'ping':
          return await respond({ ts: Date.now(), pending: this.pending.size });
        case 'get-config':
          return await respond({
            configId: this.configId,
            model: this.modelRef(),
            codec: this.opts.codec,
            point: this.opts.point,
            fps: this.opts.fps ?? 0,
            source: this.opts.source.source,
          });
        case 'restart-pipeline': {
          await this.swapPipeline(
            await this.newPipeline(this.opts.bundle, this.opts.codec, this.opts.point),
          );
          return await respond({ restarted: true });
        }
        default:
          return await respond(
            null,
            `unknown op ${JSON.stringify(t.op.slice(0, 64))}; ops: ping, get-config, restart-pipeline`,
          );
      }
    } catch (e) {
      return respond(null, (e instanceof Error ? e.message : String(e)).slice(0, 1024));
    }
  }

  /** Answer an op of this agent on its response topic; never rejects. */
  private respond(
    op: 'config',
    id: string | null,
    data: unknown,
    error: string | null = null,
    errorData: unknown = null,
  ): Promise<void> {
    return this.answerOn(this.opTopic('response', op), op, id, data, error, errorData);
  }

  /** Publish an op's answer on `topic`; never rejects (a failure is logged). */
  private async answerOn(
    topic: string,
    op: string,
    id: string | null,
    data: unknown,
    error: string | null = null,
    errorData: unknown = null,
  ): Promise<void> {
    const body: OpResponse = {
      status: error ? 'error' : 'ok',
      data: error ? errorData : data,
      error,
      id,
      ts: Date.now(),
    };
    if (!this.client?.connected) return;
    await this.client
      .publishAsync(topic, JSON.stringify(body), { qos: 1 })
      .catch((err: Error) =>
        log.warn({ device: this.opts.deviceId, op, err: err.message }, 'response not sent'),
      );
  }

  private async publishStatus(): Promise<void> {
    if (!this.client?.connected) return;
    await this.client
      .publishAsync(this.topic('status'), this.status('online'), { qos: 1, retain: true })
      .catch(() => undefined);
  }

  private sweep(): void {
    this.adapt();
    const limit = performance.now() - (this.opts.resultTimeoutMs ?? 30_000);
    for (const [id, p] of this.pending) {
      // with an outbox only a frame sent and unanswered on this connection times out;
      // without one, any frame older than the timeout does (memory stays bounded)
      const old = this.outbox
        ? p.sentOn === this.conn && this.ready && p.sentAt < limit
        : p.t0 < limit;
      if (old) {
        this.pending.delete(id);
        this.forget(id);
        this.stats.lost++;
      }
    }
    this.flush();
    this.wake();
  }

  /** The frame is answered (or given up): it leaves the outbox. */
  private forget(frameId: number): void {
    this.outbox
      ?.remove(frameId)
      .catch((e: Error) =>
        log.warn({ device: this.opts.deviceId, frameId, err: e.message }, 'outbox remove failed'),
      );
  }

  /** Frames sent on this connection and not yet answered. */
  private inFlight(): number {
    let n = 0;
    for (const p of this.pending.values()) if (p.sentOn === this.conn) n++;
    return n;
  }

  /** Publish the unsent frames, oldest first, while the in-flight window has room;
   * returns how many of them had been sent on an earlier connection. */
  private flush(): number {
    if (!this.ready) return 0;
    const window = this.opts.maxInFlight ?? 4;
    let room = window - this.inFlight();
    let resent = 0;
    for (const [frameId, p] of this.pending) {
      if (room <= 0) break;
      if (p.sentOn === this.conn) continue;
      resent += p.sentOn > 0 ? 1 : 0;
      this.publishFrame(frameId, p);
      room--;
    }
    return resent;
  }

  /** The next reconnect after 1, 2, 4, ... x the base period (at most maxReconnectMs),
   * each scaled by a random 0.5-1 so a fleet that lost its edge does not come back at
   * once. mqtt.js retries on a fixed interval; after each failed attempt its timer is
   * re-armed with the next period (mqtt.js's own _clearReconnect/_setupReconnect). */
  private scheduleReconnect(): void {
    if (this.stopping) return;
    const base = this.opts.reconnectPeriodMs ?? 1000;
    const cap = this.opts.maxReconnectMs ?? 30_000;
    const delay =
      Math.min(cap, base * 2 ** Math.min(this.attempts, 20)) * (0.5 + Math.random() / 2);
    this.attempts++;
    const c = this.client as unknown as {
      options: { reconnectPeriod: number };
      _clearReconnect?: () => void;
      _setupReconnect?: () => void;
    };
    c.options.reconnectPeriod = Math.max(1, Math.round(delay));
    if (c._clearReconnect && c._setupReconnect) {
      c._clearReconnect();
      c._setupReconnect();
    }
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

  /** Send one sample; resolves once it is handed to mqtt.js. */
  async send(s: Sample): Promise<void> {
    if (this.stopping) return;
    const frameId = this.nextId;
    this.nextId = (this.nextId + 1) >>> 0;
    const t0 = performance.now();
    const capturedAt = Date.now();
    let enc;
    try {
      enc = await this.withPipeline((pipe) =>
        pipe.encode(s, frameId, capturedAt, this.opts.tagFrames ?? false),
      );
    } catch (e) {
      // One bad image must not stop a camera: skip it, count it, say so.
      this.stats.skipped++;
      log.warn(
        { device: this.opts.deviceId, sample: s.name, err: (e as Error).message },
        'skipped',
      );
      return;
    }
    const frame = Buffer.from(enc.frame.buffer, enc.frame.byteOffset, enc.frame.byteLength);
    const p: Pending = { capturedAt, t0, label: s.label, frame, sentOn: 0, sentAt: 0 };
    if (this.outbox) {
      if (!(await this.makeRoom(frame.length))) {
        this.drop(frameId, 'the outbox is full of frames in flight');
        return;
      }
      await this.outbox.put({ frameId, capturedAt, label: s.label, frame });
    }
    this.pending.set(frameId, p);
    this.stats.sent++;
    this.stats.frameBytes += enc.frame.byteLength;
    this.stats.payloadBytes += enc.payloadBytes;
    pushBounded(this.stats.headMs, enc.headMs);
    this.flush();
  }

  /** Drop-oldest: drop unsent frames, oldest first, until `bytes` more fit the outbox;
   * false when only frames in flight are left. */
  private async makeRoom(bytes: number): Promise<boolean> {
    const box = this.outbox!;
    while (!box.fits(bytes)) {
      const victim = [...this.pending].find(([, q]) => q.sentOn !== this.conn || !this.ready);
      if (!victim) return false;
      this.pending.delete(victim[0]);
      await box.remove(victim[0]);
      this.drop(victim[0], 'outbox full (drop-oldest)');
    }
    return true;
  }

  private drop(frameId: number, why: string): void {
    this.stats.dropped++;
    log.warn({ device: this.opts.deviceId, frameId, why }, 'frame dropped');
    this.wake();
  }

  /** Publish now if the connection is ready; otherwise the frame waits for the next one. */
  private publishFrame(frameId: number, p: Pending): void {
    if (!this.ready) return;
    p.sentOn = this.conn;
    p.sentAt = performance.now();
    this.rate?.sent(p.frame.length, p.sentAt);
    this.client.publish(this.topic('features'), p.frame, { qos: 1 }, (err) => {
      if (err)
        log.warn({ device: this.opts.deviceId, frameId, err: err.message }, 'publish failed');
    });
  }

  /** Stream the source until it ends (or stop()), then wait for the answers. */
  async run(): Promise<AgentStats> {
    const window = this.opts.maxInFlight ?? 4;
    const started = performance.now();
    let next = started;
    // The frame is taken after the waits, so a live source (camera) hands over its newest
    // frame, not one that waited for the window or the frame rate.
    const source = frameSource({ ...this.opts.source, ca: this.opts.source.ca ?? this.opts.ca });
    try {
      for (;;) {
        if (this.stopping) break;
        // with an outbox, capture goes on while offline (the outbox bounds it); otherwise
        // at most `window` frames wait for answers
        await this.until(
          () =>
            this.stopping ||
            (this.outbox ? !this.ready || this.inFlight() < window : this.pending.size < window),
        );
        if (this.stopping) break;
        const fps = this.opts.fps ?? 0; // read per frame: a config may change it
        const interval = fps > 0 ? 1000 / fps : 0;
        if (interval > 0) {
          const wait = next - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          next = Math.max(next + interval, performance.now() - interval);
        }
        const s = await source.next();
        if (s.done || this.stopping) break;
        await this.send(s.value);
      }
    } finally {
      await source.return(undefined);
    }
    await this.until(() => this.pending.size === 0 || this.stopping);
    this.stats.elapsedMs = performance.now() - started;
    return this.stats;
  }

  /** Stop sending; pending frames still wait for their answers unless `now`. */
  async stop(now = false): Promise<void> {
    this.stopping = true;
    this.updater?.close();
    if (now) {
      // frames in the outbox are not lost: the next start sends them
      if (!this.outbox) this.stats.lost += this.pending.size;
      this.pending.clear();
    }
    this.wake();
    if (this.sweeper) clearInterval(this.sweeper);
    if (this.client) {
      // A clean stop publishes death itself (the will is only for unclean loss).
      if (this.client.connected) {
        await this.client
          .publishAsync(this.topic('status'), this.status('offline'), { qos: 1, retain: true })
          .catch(() => undefined);
      }
      await this.client.endAsync();
    }
    if (this.pipeline && !this.pipelineClosed) {
      this.pipelineClosed = true;
      await this.withPipeline((pipe) => pipe.close());
    }
  }
}
