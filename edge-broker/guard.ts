/**
 * A per-connection guard in front of the MQTT parser: it reads each packet's fixed
 * header as the bytes arrive and closes the connection as soon as a packet declares a
 * remaining length over the limit, before its payload is read (the parser would
 * otherwise buffer it whole). It also reads the bytes of CONNECT, SUBSCRIBE and
 * UNSUBSCRIBE packets and the topic of each PUBLISH and checks them against the MQTT
 * 3.1.1 rules in compliance.ts, and the number of filters in a SUBSCRIBE or UNSUBSCRIBE
 * against the broker's cap; a packet that breaks one never reaches the broker. Bytes
 * pass through unchanged.
 */
import { Duplex, Transform, type TransformCallback } from 'node:stream';
import type { Socket } from 'node:net';
import {
  checkConnect,
  checkFilters,
  checkFixedHeader,
  checkPublishId,
  checkPublishTopic,
  ProtocolViolation,
  publishTopicBytes,
} from './compliance.js';

const CONNECT = 1;
const PUBLISH = 3;
const SUBSCRIBE = 8;
const UNSUBSCRIBE = 10;

export class PacketSizeError extends Error {
  constructor(
    readonly size: number,
    readonly limit: number,
  ) {
    super(
      Number.isFinite(size)
        ? `MQTT packet of ${size} B over the limit of ${limit} B`
        : 'malformed MQTT remaining length',
    );
    this.name = 'PacketSizeError';
  }
}

export class PacketSizeGuard extends Transform {
  private state: 'type' | 'length' | 'body' = 'type';
  private length = 0;
  private multiplier = 1;
  private lengthBytes = 0;
  private left = 0;
  private type = 0;
  private flags = 0;
  /** Bytes of the packet body being collected for a check, and how many are needed. */
  private parts: Buffer[] = [];
  private got = 0;
  private need = 0;
  /** A PUBLISH's topic bytes (with their length prefix), once read; 0 before. */
  private topicBytes = 0;

  constructor(
    readonly limit: number,
    /** Topic filters allowed in one SUBSCRIBE or UNSUBSCRIBE. */
    readonly maxFilters = Infinity,
  ) {
    super();
  }

  /** The collected body is complete: check it (a PUBLISH first learns its topic size). */
  private check(): void {
    const body = Buffer.concat(this.parts, this.got);
    if (this.type === PUBLISH && this.topicBytes === 0) {
      if (body.length < 2) throw new ProtocolViolation('PUBLISH: truncated topic');
      // a PUBLISH learns its topic's size first; at QoS 1 and 2 the packet id follows it
      this.topicBytes = publishTopicBytes(body);
      const withId = (this.flags & 0x06) !== 0 ? 2 : 0;
      this.need = Math.min(this.length, this.topicBytes + withId);
      if (this.need > this.got) return;
    }
    this.need = 0;
    this.parts = [];
    if (this.type === CONNECT) checkConnect(body);
    else if (this.type === PUBLISH) {
      checkPublishTopic(body);
      if (this.flags & 0x06) checkPublishId(body, this.topicBytes);
    } else checkFilters(body, this.type === SUBSCRIBE, this.maxFilters);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 'type') {
        const first = chunk[i++]!;
        this.type = first >> 4;
        this.flags = first & 0x0f;
        this.state = 'length';
        this.length = 0;
        this.multiplier = 1;
        this.lengthBytes = 0;
      } else if (this.state === 'length') {
        const b = chunk[i++]!;
        this.length += (b & 0x7f) * this.multiplier;
        this.multiplier *= 128;
        this.lengthBytes++;
        if (b & 0x80) {
          if (this.lengthBytes >= 4) return cb(new PacketSizeError(Infinity, this.limit));
          continue;
        }
        if (this.length > this.limit) return cb(new PacketSizeError(this.length, this.limit));
        try {
          checkFixedHeader(this.type, this.flags, this.length);
        } catch (e) {
          return cb(e as Error);
        }
        this.left = this.length;
        this.state = this.left > 0 ? 'body' : 'type';
        this.got = 0;
        this.parts = [];
        this.topicBytes = 0;
        const t = this.type;
        this.need =
          t === CONNECT || t === SUBSCRIBE || t === UNSUBSCRIBE
            ? this.length
            : t === PUBLISH
              ? Math.min(2, this.length)
              : 0;
        if (this.left === 0 && this.need === 0 && t === CONNECT) {
          return cb(new ProtocolViolation('empty CONNECT'));
        }
      } else {
        const take = Math.min(this.left, chunk.length - i);
        // collect what the check needs (a PUBLISH learns its topic size on the way)
        for (let j = i; this.need > this.got && j < i + take;) {
          const part = chunk.subarray(j, j + Math.min(i + take - j, this.need - this.got));
          this.parts.push(part);
          this.got += part.length;
          j += part.length;
          if (this.got >= this.need) {
            try {
              this.check();
            } catch (e) {
              return cb(e as Error);
            }
          }
        }
        i += take;
        this.left -= take;
        if (this.left === 0) this.state = 'type';
      }
    }
    cb(null, chunk);
  }
}

/**
 * The socket as the broker should see it: reads come through the guard; writes go to the
 * socket, and what the broker writes within one tick (mqtt-packet corks the stream for a
 * packet's header, topic and payload; a burst of PUBACKs and forwarded messages) leaves
 * in one syscall (`_writev` under the socket's cork), not one per piece.
 */
class GuardedConnection extends Duplex {
  constructor(
    private readonly socket: Socket | Duplex,
    private readonly guard: PacketSizeGuard,
  ) {
    super();
    guard.on('data', (d: Buffer) => {
      if (!this.push(d)) guard.pause();
    });
    guard.on('end', () => this.push(null));
  }

  override _read(): void {
    this.guard.resume();
  }

  /** The peer's address (TCP and TLS; undefined over WebSocket, see the request). */
  get remoteAddress(): string | undefined {
    return 'remoteAddress' in this.socket ? this.socket.remoteAddress : undefined;
  }

  private sent(ok: boolean, cb: (e?: Error | null) => void): void {
    if (ok || this.socket.destroyed) cb();
    else this.socket.once('drain', () => cb());
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.sent(this.socket.write(chunk), cb);
  }

  override _writev(
    chunks: { chunk: Buffer; encoding: BufferEncoding }[],
    cb: (e?: Error | null) => void,
  ): void {
    this.socket.cork();
    let ok = true;
    for (const c of chunks) ok = this.socket.write(c.chunk);
    this.socket.uncork();
    this.sent(ok, cb);
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.socket.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.socket.destroy();
    cb(err);
  }
}

export function guarded(
  socket: Socket | Duplex,
  limit: number,
  onRefused: (e: Error) => void,
  maxFilters = Infinity,
): Duplex {
  const guard = new PacketSizeGuard(limit, maxFilters);
  guard.on('error', (e: Error) => {
    // only the guard's own verdicts count; a stream torn down with the socket does not
    if (e instanceof PacketSizeError || e instanceof ProtocolViolation) onRefused(e);
    if (e instanceof ProtocolViolation && e.connack !== null) {
      // CONNACK with the spec's return code, then close [MQTT-3.2.2-5]
      socket.end(Buffer.from([0x20, 0x02, 0x00, e.connack]));
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    socket.destroy();
  });
  socket.pipe(guard);
  const conn = new GuardedConnection(socket, guard);
  socket.on('close', () => conn.destroy());
  socket.on('error', () => conn.destroy());
  conn.on('error', () => socket.destroy());
  return conn;
}
