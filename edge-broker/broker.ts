/**
 * The embedded MQTT broker: Aedes on TCP, and on WebSocket for browsers.
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { Aedes, type AedesOptions } from 'aedes';
import { createWebSocketStream, WebSocketServer } from 'ws';

export interface BrokerOptions {
  host?: string;
  /** TCP port; 0 picks a free one. */
  port?: number;
  /** WebSocket port; 0 picks a free one; null disables it. */
  wsPort?: number | null;
  aedes?: AedesOptions;
}

export interface EdgeBroker {
  aedes: Aedes;
  url: string;
  wsUrl: string | null;
  close(): Promise<void>;
}

function listen(server: Server | HttpServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

export async function startBroker(opts: BrokerOptions = {}): Promise<EdgeBroker> {
  const host = opts.host ?? '127.0.0.1';
  const aedes = await Aedes.createBroker(opts.aedes ?? {});
  // No Nagle: small frames and results must not wait ~40 ms for delayed ACKs.
  const tcp = createServer({ noDelay: true }, aedes.handle);
  const port = await listen(tcp, opts.port ?? 1883, host);
  let http: HttpServer | null = null;
  let wss: WebSocketServer | null = null;
  let wsUrl: string | null = null;
  if (opts.wsPort !== null) {
    http = createHttpServer((_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain' });
      res.end('splitfleet edge: MQTT over WebSocket only\n');
    });
    wss = new WebSocketServer({ server: http });
    wss.on('connection', (ws, req) => {
      const stream = createWebSocketStream(ws);
      stream.on('error', () => stream.destroy());
      aedes.handle(stream, req);
    });
    const wsPort = await listen(http, opts.wsPort ?? 9001, host);
    wsUrl = `ws://${host}:${wsPort}`;
  }
  const shown = host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    aedes,
    url: `mqtt://${shown}:${port}`,
    wsUrl: wsUrl?.replace('0.0.0.0', '127.0.0.1') ?? null,
    async close() {
      for (const ws of wss?.clients ?? []) ws.terminate();
      await new Promise<void>((r) => aedes.close(() => r()));
      await new Promise<void>((r) => tcp.close(() => r()));
      if (wss) await new Promise<void>((r) => wss!.close(() => r()));
      if (http) await new Promise<void>((r) => http!.close(() => r()));
    },
  };
}
