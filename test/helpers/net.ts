/**
 * Sockets for fault tests: a free port, and a TCP relay that can cut a link the way a
 * dead radio or a pulled cable does (no FIN, no RST: bytes just stop moving).
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export { freePort } from '../../bench/mosquitto.js';

interface Pair {
  down: Socket;
  up: Socket | null;
}

/**
 * A relay on 127.0.0.1 to `target`. `cut()` stops moving bytes both ways on every
 * connection, and holds new connections unanswered, without closing anything; `heal()`
 * moves what was held on (TCP keeps bytes in flight across an outage, so nothing is
 * lost or corrupted, only late), unless an end gave up and closed meanwhile.
 */
export class TcpRelay {
  private readonly pairs = new Set<Pair>();
  private isCut = false;
  /** Connections accepted so far (a reconnect shows as one more). */
  accepted = 0;

  private constructor(
    private readonly server: Server,
    private readonly target: { host: string; port: number },
  ) {}

  static async start(targetUrl: string): Promise<TcpRelay> {
    const t = new URL(targetUrl);
    const server = createServer({ noDelay: true });
    const relay = new TcpRelay(server, { host: t.hostname, port: Number(t.port) });
    server.on('connection', (s) => relay.accept(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return relay;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private accept(down: Socket): void {
    this.accepted++;
    const pair: Pair = { down, up: null };
    this.pairs.add(pair);
    const drop = () => {
      this.pairs.delete(pair);
      down.destroy();
      pair.up?.destroy();
    };
    down.on('error', drop).on('close', drop);
    down.pause();
    if (!this.isCut) this.join(pair);
  }

  private join(pair: Pair): void {
    if (pair.down.destroyed) return;
    if (!pair.up) {
      const up = connect({ ...this.target, noDelay: true });
      pair.up = up;
      const drop = () => {
        this.pairs.delete(pair);
        up.destroy();
        pair.down.destroy();
      };
      up.on('error', drop).on('close', drop);
    }
    pair.down.pipe(pair.up);
    pair.up.pipe(pair.down);
    pair.down.resume();
    pair.up.resume();
  }

  /** The link goes dead: nothing moves, nothing closes. */
  cut(): void {
    this.isCut = true;
    for (const p of this.pairs) {
      p.down.unpipe();
      p.up?.unpipe();
      p.down.pause();
      p.up?.pause();
    }
  }

  heal(): void {
    this.isCut = false;
    for (const p of this.pairs) this.join(p);
  }

  async close(): Promise<void> {
    for (const p of this.pairs) {
      p.down.destroy();
      p.up?.destroy();
    }
    this.pairs.clear();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
