/**
 * Past one node: the broker's state in Redis.
 *
 * - `persist` (one node): sessions, subscriptions, retained messages, wills and the QoS 1
 *   messages queued for offline persistent sessions live in Redis
 *   (aedes-persistence-redis), so a restarted edge finds them again.
 * - `cluster` (N nodes): the same, plus the broker's message bus over Redis pub/sub
 *   (mqemitter-redis): a device may connect to any node, and a message published on one
 *   node reaches subscribers on every node. Each node decodes only the frames of the
 *   devices connected to it (`fromThisNode`), so every frame is decoded once.
 *
 * Redis may restart: commands wait for it (no retry limit), and a node publishes on the
 * bus only once its own subscriptions are back (`gate` below); otherwise a message sent
 * just after Redis returned could reach Redis before the subscription that should carry
 * it back, and be lost. Redis pub/sub still delivers at most once: what was in flight
 * when Redis went, and what reached it before another node's subscriptions were back, is
 * gone. `clusterOf(aedes).onBusBack` tells when the bus returned, and since when messages
 * may have been lost, so the intake can publish its recent answers again.
 */
import type { Aedes, AedesOptions, AedesPublishPacket } from 'aedes';
import { limitedLog, log } from '../core/util/log.js';

export type RedisMode = 'persist' | 'cluster';

/** What the rest of the edge may know of the broker's Redis (found with `clusterOf`). */
export interface RedisLink {
  url: string;
  mode: RedisMode;
  /** `fn(lostAt)` each time the bus is back after Redis was lost (cluster mode only);
   * `lostAt` is when the loss was seen. Returns the function that stops listening. */
  onBusBack(fn: (lostAt: number) => void): () => void;
}

/** The broker's Redis, keyed by the persistence object Aedes was given. */
const links = new WeakMap<object, RedisLink>();

/** The Redis behind a broker, or null where it has none (a single node in memory). */
export function clusterOf(aedes: Aedes): RedisLink | null {
  const persistence: unknown = Reflect.get(aedes, 'persistence');
  if (typeof persistence !== 'object' || persistence === null) return null;
  return links.get(persistence) ?? null;
}

export interface RedisBackend {
  /** What goes into Aedes' options: persistence, and in a cluster the emitter. */
  aedes: Pick<AedesOptions, 'persistence' | 'mq'>;
  mode: RedisMode;
  /** Release the Redis connections; call after the broker closed. */
  close(): Promise<void>;
}

/** ioredis options from a `redis://[user:password@]host[:port][/db]` (or `rediss://`) URL. */
export function redisOptions(url: string): Record<string, unknown> {
  const u = new URL(url);
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new Error(`not a redis:// URL: ${url}`);
  }
  const db = u.pathname.replace(/^\//, '');
  if (db && !/^\d+$/.test(db)) throw new Error(`the database of ${url} is not a number`);
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(db ? { db: Number(db) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    // a restart of Redis is waited for: commands queue, none fails after N retries
    maxRetriesPerRequest: null,
    // reconnect every 200 ms (not ioredis' growing delay, up to 2 s): the nodes of a
    // cluster come back within a moment of each other
    retryStrategy: () => 200,
  };
}

/** The ioredis connection fields mqemitter-redis has (it declares none of them). */
interface RedisConn {
  status: string;
  on(event: 'ready' | 'close', fn: () => void): void;
  ping(): Promise<unknown>;
  quit(): Promise<unknown>;
  sendCommand(command: unknown, stream?: unknown): Promise<unknown>;
  disconnect(): void;
}
interface RedisEmitter {
  subConn: RedisConn;
  pubConn: RedisConn;
  emit(msg: unknown, done?: (err?: Error) => void): void;
  close(cb: () => void): void;
}

/**
 * The libraries on these connections drop the promises of some commands (a QUIT, a
 * publish without a callback, queued commands flushed when a connection is closed with
 * Redis gone: "Connection is closed"). Every command's promise is observed here, so such
 * a failure is logged, not an unhandled rejection that ends the process; callers that
 * wait for a command still see its failure.
 */
function observeCommands(conn: RedisConn, where: string): void {
  const send = conn.sendCommand.bind(conn);
  conn.sendCommand = (command, stream) => {
    const p = send(command, stream);
    p.catch((e: unknown) => log.debug({ redis: where, err: String(e) }, 'redis command failed'));
    return p;
  };
}

/** The Redis-backed emitter and persistence; their libraries (ioredis and more) are
 * loaded only here, so an edge without Redis does not pay for them at start-up. */
export async function redisBackend(url: string, mode: RedisMode): Promise<RedisBackend> {
  const { default: persistenceRedis } = await import('aedes-persistence-redis');
  const { default: mqemitterRedis } = await import('mqemitter-redis');
  const { Redis } = await import('ioredis');
  const options = redisOptions(url);
  const where = `${String(options.host)}:${String(options.port)}`;
  // the persistence's connection is ours: it gets an error listener (ioredis prints
  // "Unhandled error event" for every failed reconnect otherwise) and its dropped commands
  // are observed (below)
  const db = new Redis(options);
  db.on('error', (e: Error) =>
    limitedLog.warn(`redis-db:${where}`, { redis: where, err: e.message }, 'redis error'),
  );
  observeCommands(db as unknown as RedisConn, where);
  const persistence = persistenceRedis({ ...options, conn: db });
  const back = new Set<(lostAt: number) => void>();
  links.set(persistence, {
    url,
    mode,
    onBusBack(fn) {
      back.add(fn);
      return () => back.delete(fn);
    },
  });
  let mq: RedisEmitter | null = null;
  if (mode === 'cluster') {
    const emitter = mqemitterRedis({
      ...options,
      // as Aedes builds its own emitter: [MQTT-4.7.1-3]
      matchEmptyLevels: true,
    }) as unknown as RedisEmitter;
    mq = emitter;
    const sub = emitter.subConn;
    // the gate: open while the subscriber connection holds its subscriptions
    let open = false;
    let opened: () => void = () => undefined;
    let ready = new Promise<void>((r) => (opened = r));
    let closing = false;
    let lostAt: number | null = null;
    sub.on('close', () => {
      if (!open || closing) return;
      open = false;
      lostAt = Date.now();
      ready = new Promise<void>((r) => (opened = r));
      log.warn({ redis: where }, 'redis lost: the bus waits for it');
    });
    sub.on('ready', () => {
      // ioredis re-subscribes right after 'ready'; a PING answered after those commands
      // means the subscriptions are in force (one connection answers in order)
      setImmediate(() => {
        sub.ping().then(
          () => {
            if (open) return;
            open = true;
            opened();
            if (lostAt !== null) {
              const at = lostAt;
              lostAt = null;
              log.info({ redis: where, downMs: Date.now() - at }, 'redis back: the bus goes on');
              for (const fn of [...back]) fn(at);
            }
          },
          () => undefined,
        );
      });
    });
    // Aedes closes its emitter with QUIT and waits for both connections to end: with
    // Redis gone that would wait forever, so they are cut after a moment
    // mqemitter-redis drops the promise of its QUITs: once cut they would reject unhandled
    // ("Connection is closed"), which ends a Node process
    for (const c of [sub, emitter.pubConn]) {
      const q = c.quit.bind(c);
      c.quit = () => {
        const p = q();
        p.catch(() => undefined);
        return p;
      };
    }
    const quit = emitter.close.bind(emitter);
    emitter.close = (cb) => {
      closing = true;
      quit(cb);
      setTimeout(() => {
        sub.disconnect();
        emitter.pubConn.disconnect();
      }, 1000).unref();
    };
    const emit = emitter.emit.bind(emitter);
    // messages held while the bus was down go out first, in the order they came: a later
    // one must not pass them
    let held = 0;
    emitter.emit = (msg, done) => {
      // mqemitter-redis hands its publish promise to `done`: without one a failure would
      // reject unobserved
      const cb = done ?? (() => undefined);
      if (open && held === 0) {
        emit(msg, cb);
        return;
      }
      held++;
      ready.then(
        () => {
          held--;
          emit(msg, cb);
        },
        (e: Error) => {
          held--;
          cb(e);
        },
      );
    };
    (emitter as unknown as { state: { on(e: 'error', fn: (e: Error) => void): void } }).state.on(
      'error',
      (e) => log.warn({ redis: where, err: e.message }, 'redis bus error'),
    );
  }
  return {
    aedes: { persistence, ...(mq ? { mq } : {}) },
    mode,
    async close() {
      // (with Redis gone its last commands never finish: at most 2 s)
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        persistence.destroy().catch((e: unknown) => {
          log.warn({ redis: where, err: String(e) }, 'redis persistence close failed');
        }),
        new Promise<void>((r) => (timer = setTimeout(r, 2000))),
      ]);
      clearTimeout(timer);
    },
  };
}

/** Whether a packet entered the broker on this node: published by a client connected here
 * (or by this node itself). Packets from other nodes of a cluster carry their broker's id. */
export function fromThisNode(aedes: Aedes, packet: AedesPublishPacket): boolean {
  return packet.brokerId === undefined || packet.brokerId === aedes.id;
}
