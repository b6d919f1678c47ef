/**
 * The agent's MQTT session: connect, reconnect with backoff and jitter, subscribe, and
 * presence.
 *
 * Presence: a retained birth on `.../status` and the same message with state 'offline'
 * as the last will, both carrying a sequence number that grows with every connection, so
 * a late will from an old connection can be told from a live one. A clean stop publishes
 * the death itself (the will is only for an unclean loss).
 *
 * Reconnects are the session's own (mqtt.js's reconnect timer has no backoff, so it is
 * off): after 1, 2, 4, ... times the base period (at most maxReconnectMs), each scaled by
 * a random 0.5-1 so a fleet that lost its edge does not come back all at once. With
 * several broker URLs (the nodes of a cluster) every reconnect tries the next one. The
 * same schedule serves the first connection: start() waits for the edge however long it
 * takes to come up (a line in the log at most every RETRY_LOG_MS says so), and fails only
 * on a login the broker refuses (CONNACK return code 4 or 5) or a stop. A refused login
 * after the first connection is retried at the longest period (the edge's credentials
 * may be rotated).
 *
 * A QoS 1 publish not acknowledged when its connection is lost fails (its callback gets
 * an error) rather than waiting for a connection that will never acknowledge it: each
 * connection starts with an empty store (mqtt.js `reconnect()`), and the uplink re-sends
 * unanswered frames itself on the next connection.
 *
 * Every connection subscribes to the device's topics before it is announced `online`
 * (bus.ts), so no answer can come back before its subscription exists.
 */
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import type { DeviceStatus } from '../core/wire/messages.js';
import { RESPONSE_QOS } from '../core/wire/rpc.js';
import { deviceClientId, deviceTopic, type DeviceChannel } from '../core/wire/topics.js';
import { limitedLog, log, RateLimitedLog } from '../core/util/log.js';
import type { Bus } from './bus.js';

const CONNECT_TIMEOUT_MS = 10_000;
/** With an outbox, start() waits this long for a first connection, then works offline. */
const OFFLINE_START_MS = 2000;
/** A broker that cannot be reached is logged at most once per this long (per device). */
export const RETRY_LOG_MS = 10_000;
/** stop() gives the broker this long to acknowledge the death and the DISCONNECT before it
 * cuts the connection. */
const STOP_WAIT_MS = 5000;
const retryLog = new RateLimitedLog(RETRY_LOG_MS);

export interface SessionOptions {
  /** Broker URLs, comma-separated (the nodes of a cluster). */
  url: string;
  fleet: string;
  deviceId: string;
  base: string;
  username?: string;
  password?: string;
  ca?: Buffer;
  reconnectPeriodMs?: number;
  maxReconnectMs?: number;
  /** Start without a broker (the agent has an outbox): only a refused login fails start(). */
  offlineStart: boolean;
  /** Topics to subscribe to on every connection, at QoS 1 (see `atMostOnce`). */
  subscriptions: string[];
  /** Of those, the ones taken at QoS 0: a message lost with its connection is recovered
   * another way (a compact answer: the frame is sent again, and answered again), and
   * each one spares the device a PUBACK on its uplink. */
  atMostOnce?: string[];
}

/** What the status message says besides state, seq and time. */
export type Presence = () => Omit<DeviceStatus, 'state' | 'seq' | 'ts'>;

export type MessageHandler = (topic: string, payload: Buffer, retained: boolean) => void;

/** A refused login: CONNACK return code 4 (bad user name or password) or 5 (not authorized). */
export function isRefusedLogin(e: Error): boolean {
  const code: unknown = 'code' in e ? e.code : undefined;
  return code === 4 || code === 5;
}

/** mqtt.js' `servers` (it takes the next one on every reconnect) from broker URLs. */
function servers(urls: string[]): NonNullable<IClientOptions['servers']> {
  type Server = NonNullable<IClientOptions['servers']>[number];
  type Protocol = NonNullable<Server['protocol']>;
  const protocols: readonly string[] = ['mqtt', 'mqtts', 'tcp', 'tls', 'ws', 'wss'];
  const isProtocol = (p: string): p is Protocol => protocols.includes(p);
  return urls.map((u) => {
    const x = new URL(u);
    const protocol = x.protocol.slice(0, -1);
    if (!isProtocol(protocol)) throw new Error(`unsupported broker URL ${u}`);
    const port = x.port ? Number(x.port) : protocol === 'mqtts' ? 8883 : 1883;
    return { host: x.hostname, port, protocol };
  });
}

export class Session {
  private client: MqttClient | null = null;
  /** Connections made so far; the current one is subscribed when `ready`. */
  private conn = 0;
  private ready = false;
  /** Presence sequence number: one per connection. */
  private seq = Date.now();
  private attempts = 0;
  private refused = false;
  private timer: NodeJS.Timeout | undefined;
  private stopping = false;
  /** Set by stop(): ends a start() still waiting for its first connection. */
  private abortStart: ((e: Error) => void) | null = null;
  /** What stop() waits for before it closes the connection (the uplink's answers). */
  private readonly holds: Promise<void>[] = [];

  constructor(
    private readonly opts: SessionOptions,
    private readonly bus: Bus,
    private readonly presence: Presence,
    private readonly onMessage: MessageHandler,
  ) {}

  topic(ch: DeviceChannel): string {
    return deviceTopic(this.opts.fleet, this.opts.deviceId, ch, this.opts.base);
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** The number of the current connection once it is subscribed (frames may go);
   * null while there is none. */
  get connection(): number | null {
    return this.ready ? this.conn : null;
  }

  private status(state: DeviceStatus['state']): Buffer {
    const s: DeviceStatus = { state, seq: this.seq, ts: Date.now(), ...this.presence() };
    return Buffer.from(JSON.stringify(s));
  }

  /** Connect; resolves once connected and subscribed (with `offlineStart`: or after a
   * short wait). Rejects on a refused login, or (without `offlineStart`) on any error. */
  async start(): Promise<void> {
    const o = this.opts;
    const options: IClientOptions = {
      clientId: deviceClientId(o.fleet, o.deviceId),
      clean: true,
      keepalive: 30,
      reconnectPeriod: 0, // reconnects are scheduled here (backoff with jitter)
      connectTimeout: CONNECT_TIMEOUT_MS,
      protocolVersion: 4,
      resubscribe: false,
      will: { topic: this.topic('status'), payload: this.status('offline'), qos: 1, retain: true },
      ...(o.username ? { username: o.username, password: o.password } : {}),
      ...(o.ca ? { ca: o.ca } : {}),
    };
    const urls = o.url.split(',').map((u) => u.trim());
    const many = urls.length > 1 ? { servers: servers(urls) } : {};
    const client = connect(urls[0]!, { ...options, ...many });
    this.client = client;
    let first: (() => void) | undefined;
    const firstReady = new Promise<void>((r) => (first = r));
    client.on('connect', () => this.onConnect(client, () => first?.()));
    client.on('close', () => this.onClose(client));
    client.on('reconnect', () => this.bus.emit('reconnecting'));
    client.on('error', (err) => {
      if (isRefusedLogin(err)) {
        this.refused = true;
        log.warn({ device: o.deviceId, url: o.url, err: err.message }, 'login refused');
        return;
      }
      retryLog.warn(
        `unreachable:${o.deviceId}`,
        { device: o.deviceId, url: o.url, err: err.message, attempt: this.attempts + 1 },
        'edge not reachable: retrying',
      );
    });
    client.on('message', (topic, payload, packet) => {
      try {
        this.onMessage(topic, payload, packet.retain);
      } catch (e) {
        // a bad message must never take the agent down (nor flood its log)
        limitedLog.warn(
          `dropped:${o.deviceId}:${topic}`,
          { device: o.deviceId, topic, err: String(e).slice(0, 1024) },
          'message dropped',
        );
      }
    });
    try {
      await new Promise<void>((resolve, reject) => {
        // only a refused login (or a stop) ends the wait: anything else is retried
        const onErr = (e: Error) => {
          if (!isRefusedLogin(e)) return;
          client.off('error', onErr);
          reject(e);
        };
        client.on('error', onErr);
        this.abortStart = (e) => {
          client.off('error', onErr);
          reject(e);
        };
        const done = () => {
          client.off('error', onErr);
          resolve();
        };
        firstReady.then(done, reject);
        if (o.offlineStart) setTimeout(done, OFFLINE_START_MS).unref();
      });
    } catch (e) {
      await this.stop();
      throw e;
    } finally {
      this.abortStart = null;
    }
  }

  private onConnect(client: MqttClient, first: () => void): void {
    // No Nagle on TCP: a frame must not wait for the ACK of the previous one.
    const sock = client.stream as { setNoDelay?: (on: boolean) => void };
    sock.setNoDelay?.(true);
    const conn = ++this.conn;
    this.ready = false;
    this.refused = false;
    client.publish(this.topic('status'), this.status('online'), { qos: 1, retain: true });
    client
      .subscribeAsync(
        Object.fromEntries(
          this.opts.subscriptions.map((t) => [
            t,
            { qos: this.opts.atMostOnce?.includes(t) ? 0 : RESPONSE_QOS },
          ]),
        ),
      )
      .then(() => {
        if (conn !== this.conn) return;
        this.ready = true;
        this.attempts = 0;
        this.bus.emit('online', conn);
        first();
      })
      .catch((err: Error) =>
        log.warn({ device: this.opts.deviceId, err: err.message }, 'subscribe failed'),
      );
  }

  private onClose(client: MqttClient): void {
    failUnacknowledged(client);
    const wasReady = this.ready;
    this.ready = false;
    if (wasReady) this.bus.emit('offline');
    // The next connection is a new session: new seq, and a will that names it.
    this.seq++;
    if (client.options.will) client.options.will.payload = this.status('offline');
    this.scheduleReconnect(client);
  }

  /** The next attempt after the backoff's delay (never while one is already waiting). */
  private scheduleReconnect(client: MqttClient): void {
    if (this.stopping || client.disconnecting || this.timer) return;
    const base = this.opts.reconnectPeriodMs ?? 1000;
    const cap = this.opts.maxReconnectMs ?? 30_000;
    const exp = this.refused ? cap : base * 2 ** Math.min(this.attempts, 20);
    const delay = Math.max(1, Math.round(Math.min(cap, exp) * (0.5 + Math.random() / 2)));
    this.attempts++;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.stopping && !client.connected) client.reconnect();
    }, delay);
  }

  /** Publish on the current connection; rejects when there is none. */
  async publish(
    topic: string,
    payload: string | Buffer,
    opts: { qos: 0 | 1; retain?: boolean },
  ): Promise<void> {
    const client = this.client;
    if (!client?.connected) throw new Error('not connected');
    await client.publishAsync(topic, payload, opts);
  }

  /** Publish a frame at QoS 1 without waiting for its ACK (frames pipeline). */
  publishFrame(frame: Buffer, onError: (err: Error) => void): void {
    this.client?.publish(this.topic('features'), frame, { qos: 1 }, (err) => {
      if (err) onError(err);
    });
  }

  /** Publish the birth again (the settings it carries changed); never rejects. */
  async announce(): Promise<void> {
    if (!this.connected) return;
    await this.publish(this.topic('status'), this.status('online'), {
      qos: 1,
      retain: true,
    }).catch(() => undefined);
  }

  /** stop() waits for `until` before it closes the connection (frames in flight get
   * their answers); `until` must settle by itself in bounded time. */
  holdClose(until: Promise<void>): void {
    this.holds.push(until);
  }

  /** Wait for what holds the connection open, publish the death (a clean stop) and end
   * the connection; bounded (STOP_WAIT_MS) once the holds are done. A start() still
   * waiting for its first connection fails. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.abortStart?.(new Error('stopped before the edge could be reached'));
    await Promise.all(this.holds.splice(0));
    this.ready = false;
    const client = this.client;
    if (!client) return;
    let timer: NodeJS.Timeout | undefined;
    const cut = new Promise<void>((r) => {
      timer = setTimeout(() => {
        // no acknowledgement in time: cut the connection (its close fails what waits)
        client.stream?.destroy();
        r();
      }, STOP_WAIT_MS);
    });
    if (client.connected) {
      await Promise.race([
        client
          .publishAsync(this.topic('status'), this.status('offline'), { qos: 1, retain: true })
          .catch(() => undefined),
        cut,
      ]);
    }
    // not connected: nothing to say goodbye to, and nothing will be acknowledged
    await client.endAsync(!client.connected);
    clearTimeout(timer);
  }
}

/**
 * Fail the QoS 1 publishes mqtt.js still waits to have acknowledged: the connection that
 * would acknowledge them is gone, and the next one starts with an empty store, so they
 * would never be sent again nor acknowledged (their callbacks would never run, and a
 * clean `end()` would wait for them forever). Each callback gets an error; the uplink
 * re-sends its unanswered frames on the next connection.
 */
function failUnacknowledged(client: MqttClient): void {
  if (client.disconnected) return; // ended: its stores are closed
  const ids = Object.keys(client.outgoing).map(Number);
  for (const id of ids) client.removeOutgoingMessage(id);
  // a clean end() waiting for these acknowledgements goes on
  if (ids.length > 0 && client.disconnecting) client.emit('outgoingEmpty');
}
