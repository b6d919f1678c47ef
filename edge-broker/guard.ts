/**
 * A per-connection guard in front of the MQTT parser: it reads each packet's fixed
 * header as the bytes arrive and closes the connection as soon as a packet declares a
 * remaining length over the limit, before its payload is read (the parser would
 * otherwise buffer it whole). Bytes pass through unchanged.
 */
import { Duplex, Transform, type TransformCallback } from 'node:stream';
import type { Socket } from 'node:net';

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

  constructor(readonly limit: number) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 'type') {
        i++;
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
        this.left = this.length;
        this.state = this.left > 0 ? 'body' : 'type';
      } else {
        const take = Math.min(this.left, chunk.length - i);
        i += take;
        this.left -= take;
        if (this.left === 0) this.state = 'type';
      }
    }
    cb(null, chunk);
  }
}

/** The socket as the broker should see it: reads through the guard, writes direct. */
export function guarded(socket: Socket, limit: number, onRefused: (e: Error) => void): Duplex {
  const guard = new PacketSizeGuard(limit);
  guard.on('error', (e: Error) => {
    // only the guard's own verdicts count; a stream torn down with the socket does not
    if (e instanceof PacketSizeError) onRefused(e);
    socket.destroy();
  });
  socket.pipe(guard);
  const conn = Duplex.from({ readable: guard, writable: socket });
  socket.on('close', () => conn.destroy());
  conn.on('error', () => socket.destroy());
  return conn;
}
