/**
 * The embedded MQTT broker: Aedes on TCP, and on WebSocket for browsers.
 */
import type { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { Aedes, type AedesOptions, type AedesPublishPacket } from 'aedes';
import { createWebSocketStream, WebSocketServer } from 'ws';
import { MAX_FRAME_BYTES } from '../core/wire/frame.js';
import { limitedLog, log } from '../core/util/log.js';
import { Access, type AccessOptions } from './auth.js';
import { guarded } from './guard.js';
import { ProtocolViolation } from './compliance.js';
import { redisBackend, type RedisMode } from './cluster.js';
import { deliverOnce } from './deliver-once.js';

export interface BrokerOptions {
  host?: string;
  /** TCP port; 0 picks a free one. */
  port?: number;
  /** WebSocket port; 0 picks a free one; null disables it. */
  wsPort?: number | null;
  aedes?: AedesOptions;
  /** A TLS listener beside TCP: PEM key and certificate (and CA for client certificates). */
  tls?: { port?: number; key: string | Buffer; cert: string | Buffer; ca?: string | Buffer };
  /** Credentials and per-client limits (auth.ts); without credentials the broker is open. */
  access?: Omit<AccessOptions, 'maxPayloadBytes'> & { maxPayloadBytes?: number };
  /** The broker's state in Redis (cluster.ts): `persist` survives a restart of this node,
   * `cluster` also joins every node on the same Redis into one broker. */
  redis?: { url: string; mode: RedisMode };
  /** Hold the connections that come in until `open()`: the edge's own subscriptions are in
   * place before a device's first frame (devices waiting for a restarted edge connect at once). */
  deferOpen?: boolean;
}

export interface EdgeBroker {
  aedes: Aedes;
  access: Access;
  url: string;
  wsUrl: string | null;
  /** `mqtts://host:port` when a TLS listener runs. */
  tlsUrl: string | null;
  /** Publish from the edge itself at QoS 1; resolves when Aedes took it (a failure is
   * logged, never thrown). */
  publish(topic: string, payload: Buffer, retain?: boolean): Promise<void>;
  /** Serve the connections held by `deferOpen` (and every later one at once). */
  open(): void;
  close(): Promise<void>;
}

let handBackDepth = 0;
/**
 * The one way the edge's subscription handlers hand a packet back to Aedes, which then
 * reads that client's next packet inside the call: at once while that nesting is
 * shallow (a slot of the broker's emitter is freed at once), on a later turn of the
 * event loop once it is deep (a backlog of thousands of packets overflowed the stack;
 * soak, 10,000 frames/s; test/e2e/flood.test.ts).
 */
export function handBack(cb: () => void): void {
  if (handBackDepth >= 32) {
    setImmediate(cb);
    return;
  }
  handBackDepth++;
  try {
    cb();
  } finally {
    handBackDepth--;
  }
}

/** A packet's payload as bytes (Aedes gives a Buffer, or a string for some packets the
 * broker builds itself): the one way the edge reads a payload. */
export function payloadOf(packet: Pick<AedesPublishPacket, 'payload'>): Buffer {
  const p: Buffer | string = packet.payload;
  return typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
}

/** Publish a JSON body from the edge itself (QoS 1); never rejects. */
export function publishJson(
  broker: Pick<EdgeBroker, 'publish'>,
  topic: string,
  body: unknown,
  retain = false,
): Promise<void> {
  return broker.publish(topic, Buffer.from(JSON.stringify(body)), retain);
}

/** What a subscription of the edge is given: the packet, its topic and payload bytes. */
export type OnPacket = (packet: AedesPublishPacket, payload: Buffer) => void;

/**
 * Subscribe the edge itself to `filter`; resolves, once the subscription is in force, with
 * the function that ends it. Each packet is handed back to Aedes at once (our queues are
 * the buffer), then given to `fn`; a handler that throws is logged, never rethrown into
 * the broker.
 */
export async function subscribe(
  broker: Pick<EdgeBroker, 'aedes'>,
  filter: string,
  fn: OnPacket,
): Promise<() => Promise<void>> {
  const { aedes } = broker;
  const handler = (packet: AedesPublishPacket, cb: () => void) => {
    handBack(cb);
    try {
      fn(packet, payloadOf(packet));
    } catch (e) {
      limitedLog.warn(`subscription:${filter}`, { filter, err: String(e) }, 'handler failed');
    }
  };
  await new Promise<void>((r) => aedes.subscribe(filter, handler, r));
  let ended = false;
  return async () => {
    if (ended) return;
    ended = true;
    await new Promise<void>((r) => aedes.unsubscribe(filter, handler, r));
  };
}

/**
 * Every message a client connected to this node publishes, as the broker publishes it
 * (once its bus took it). In a cluster it does not depend on the round trip through
 * Redis, whose pub/sub may drop what was in flight when it restarted; a subscription
 * would. Returns the function that stops listening. A handler that throws is logged,
 * never rethrown into the broker.
 */
export function onClientPublish(broker: Pick<EdgeBroker, 'aedes'>, fn: OnPacket): () => void {
  const { aedes } = broker;
  const handler = (packet: AedesPublishPacket, client: unknown) => {
    if (!client) return;
    try {
      fn(packet, payloadOf(packet));
    } catch (e) {
      limitedLog.warn('client-publish', { topic: packet.topic, err: String(e) }, 'handler failed');
    }
  };
  aedes.on('publish', handler);
  return () => {
    aedes.removeListener('publish', handler);
  };
}

/**
 * A listener could not take its port: the port is in use, needs privileges, or the
 * address is not this host's. The message is one line that names the flag setting the
 * port (where the caller gives it); `code` is the system's (EADDRINUSE, ...).
 */
export class ListenError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly port: number,
    readonly flag: string | undefined,
  ) {
    super(message);
    this.name = 'ListenError';
  }
}

function listenError(e: NodeJS.ErrnoException, port: number, host: string, flag?: string): Error {
  const by = flag ? ` (${flag})` : '';
  switch (e.code) {
    case 'EADDRINUSE':
      return new ListenError(
        `port ${port} is in use${by}; stop what holds it or choose another port`,
        e.code,
        port,
        flag,
      );
    case 'EACCES':
      return new ListenError(
        `port ${port} needs privileges${by}; choose a port above 1023`,
        e.code,
        port,
        flag,
      );
    case 'EADDRNOTAVAIL':
      return new ListenError(
        `address ${host} is not one of this host's, cannot listen on port ${port}${by}`,
        e.code,
        port,
        flag,
      );
    default:
      return e;
  }
}

/**
 * Listen on `port` (0: any free one) and resolve with the port taken; the one way every
 * listener of the edge binds (MQTT TCP, WebSocket, TLS, metrics, Node-RED). A port that
 * cannot be taken rejects with a ListenError naming `flag`, the option that sets it.
 */
export function listen(
  server: Server | HttpServer | TlsServer,
  port: number,
  host: string,
  flag?: string,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const fail = (e: NodeJS.ErrnoException) => reject(listenError(e, port, host, flag));
    server.once('error', fail);
    server.listen(port, host, () => {
      server.off('error', fail);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Where clients on this host connect to a listener bound to `host`. */
export function shownHost(host: string): string {
  return host === '0.0.0.0' ? '127.0.0.1' : host;
}

export async function startBroker(opts: BrokerOptions = {}): Promise<EdgeBroker> {
  const host = opts.host ?? '127.0.0.1';
  const shown = shownHost(host);
  const backend = opts.redis ? await redisBackend(opts.redis.url, opts.redis.mode) : null;
  const aedes = await Aedes.createBroker({ ...opts.aedes, ...backend?.aedes }).catch(
    async (e: unknown) => {
      await backend?.close();
      throw e;
    },
  );
  // A frame is at most MAX_FRAME_BYTES; leave room for the MQTT header and topic.
  const access = new Access({
    ...opts.access,
    maxPayloadBytes: opts.access?.maxPayloadBytes ?? MAX_FRAME_BYTES + 4096,
  });
  access.install(aedes);
  // Aedes can emit 'error' (e.g. while clearing wills); its types do not declare it.
  (aedes as unknown as EventEmitter).on('error', (err: unknown) =>
    log.warn({ err: String(err) }, 'broker error'),
  );
  let opened = !opts.deferOpen;
  const held: (() => void)[] = [];
  const handle = (...args: Parameters<Aedes['handle']>) => {
    // each client gets each packet once, in whatever order they come (deliver-once.ts)
    if (opened) deliverOnce(aedes.handle(...args));
    else held.push(() => deliverOnce(aedes.handle(...args)));
  };
  // No Nagle: small frames and results must not wait ~40 ms for delayed ACKs.
  // every TCP/TLS packet's declared size is checked before its payload is read
  const maxPacket = access.maxPayloadBytes + 4096;
  const maxFilters = access.limit('maxFiltersPerSubscribe');
  // logged once a minute per address and kind, however often a sender repeats it
  const refuse = (from: string) => (e: Error) => {
    if (e instanceof ProtocolViolation) {
      access.stats.violations++;
      access.log.warn(
        `violation:${from}`,
        { from, err: e.message },
        'connection closed: refused packet',
      );
      return;
    }
    access.stats.oversized++;
    access.log.warn(
      `oversized:${from}`,
      { from, err: e.message },
      'connection closed: packet too large',
    );
  };
  const guard = (sock: Socket | Duplex, from = '?') =>
    guarded(sock, maxPacket, refuse(from), maxFilters);
  const tcp = createServer({ noDelay: true }, (sock) => handle(guard(sock, sock.remoteAddress)));
  let http: HttpServer | null = null;
  const tlsServer = opts.tls
    ? createTlsServer({ key: opts.tls.key, cert: opts.tls.cert, ca: opts.tls.ca }, (sock) => {
        sock.setNoDelay(true);
        handle(guard(sock, sock.remoteAddress));
      })
    : null;
  // a failed TLS handshake is the client's problem, never the broker's
  tlsServer?.on('tlsClientError', (err) => log.warn({ err: err.message }, 'TLS handshake failed'));
  let wss: WebSocketServer | null = null;

  const close = async () => {
    // Stop accepting first, then drop the clients, then wait for the listeners.
    const closed = (srv: Server | HttpServer | TlsServer) =>
      new Promise<void>((r) => (srv.listening ? srv.close(() => r()) : r()));
    const waits = [
      closed(tcp),
      ...(http ? [closed(http)] : []),
      ...(tlsServer ? [closed(tlsServer)] : []),
    ];
    for (const ws of wss?.clients ?? []) ws.terminate();
    await new Promise<void>((r) => aedes.close(() => r()));
    await backend?.close();
    if (wss) await new Promise<void>((r) => wss!.close(() => r()));
    await Promise.all(waits);
  };

  try {
    const port = await listen(tcp, opts.port ?? 1883, host, '--port');
    let wsUrl: string | null = null;
    if (opts.wsPort !== null) {
      http = createHttpServer((_req, res) => {
        res.writeHead(426, { 'content-type': 'text/plain' });
        res.end('splitfleet edge: MQTT over WebSocket only\n');
      });
      const wsPort = await listen(http, opts.wsPort ?? 9001, host, '--ws-port');
      // attached once the port is taken: ws re-emits its server's errors, a busy port's too
      wss = new WebSocketServer({ server: http, maxPayload: maxPacket });
      wss.on('error', (err) => log.warn({ err: err.message }, 'WebSocket listener error'));
      wss.on('connection', (ws, req) => {
        const stream = createWebSocketStream(ws);
        stream.on('error', () => stream.destroy());
        // the same checks as TCP: packet sizes, MQTT rules, filters per SUBSCRIBE
        handle(guard(stream, req.socket.remoteAddress), req);
      });
      wsUrl = `ws://${shown}:${wsPort}`;
    }
    const tlsUrl = tlsServer
      ? `mqtts://${shown}:${await listen(tlsServer, opts.tls?.port ?? 8883, host, '--tls-port')}`
      : null;
    const publish = (topic: string, payload: Buffer, retain = false) =>
      new Promise<void>((resolve) =>
        aedes.publish({ cmd: 'publish', topic, payload, qos: 1, retain, dup: false }, (err) => {
          if (err) log.warn({ err, topic }, 'publish failed');
          resolve();
        }),
      );
    return {
      aedes,
      access,
      tlsUrl,
      url: `mqtt://${shown}:${port}`,
      wsUrl,
      publish,
      open() {
        opened = true;
        for (const h of held.splice(0)) h();
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
