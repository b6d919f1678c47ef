/**
 * The edge's HTTP listener: `/metrics` (Prometheus text) and `/devices` (JSON: every
 * device of the fleet file, seen or not, and every other device seen, each with its
 * presence, traffic, the config the edge wants it to run, the config it runs and its
 * last refusal). It binds 127.0.0.1 unless told otherwise: it shows every device and its
 * traffic to whoever can reach it. Bound to a loopback address it answers only requests
 * that name a loopback host (`Host: localhost`, `127.x.y.z`, `[::1]`, or none): a web page
 * whose own name resolves to 127.0.0.1 (DNS rebinding) cannot have a browser on this host
 * read it. GET and HEAD only; answers are never cached or sniffed; every handler catches,
 * so no request can end the process.
 */
import {
  createServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import { limitedLog } from '../../core/util/log.js';
import { listen, shownHost } from '../broker.js';
import type { Part } from '../bus.js';
import type { DeviceView, FleetMonitor } from './monitor.js';

export interface MetricsHttpOptions {
  monitor: FleetMonitor;
  /** `/devices`: every device of the fleet file and every other seen, with the config
   * wanted and running (default: the monitor's devices seen). */
  devices?: () => DeviceView[];
  edgeId: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** Default 127.0.0.1: this host only. */
  host?: string;
}

/** Every answer: fresh at each request, and only of the type it says. */
const HEADERS = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };

const text = (res: ServerResponse, code: number, body: string) =>
  res.writeHead(code, { 'content-type': 'text/plain', ...HEADERS }).end(body);

/** Whether `host` is a loopback address or name (a listener there is this host's only). */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}

/** Whether a request's Host header names a loopback host (or is absent: no browser). */
export function loopbackHostHeader(header: string | undefined): boolean {
  if (header === undefined) return true;
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(:\d{1,5})?$/i.exec(header.trim());
  return m?.[1] !== undefined && isLoopback(m[1]);
}

export class MetricsHttp implements Part {
  readonly name = 'metrics http';
  private server: HttpServer | null = null;
  private where: string | null = null;
  /** Bound to loopback: only requests naming a loopback host are answered. */
  private loopback = true;

  constructor(private readonly o: MetricsHttpOptions) {}

  /** `http://host:port` once listening, else null. */
  get url(): string | null {
    return this.where;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      try {
        this.serve(req, res);
      } catch (e) {
        this.failed(res, e);
      }
    });
    this.server = server;
    const host = this.o.host ?? '127.0.0.1';
    this.loopback = isLoopback(host);
    this.where = `http://${shownHost(host)}:${await listen(server, this.o.port, host, '--metrics-port')}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.where = null;
    if (server?.listening) await new Promise<void>((r) => server.close(() => r()));
  }

  private serve(req: IncomingMessage, res: ServerResponse): void {
    const { monitor, edgeId } = this.o;
    const path = (req.url ?? '/').split('?')[0];
    if (this.loopback && !loopbackHostHeader(req.headers.host)) {
      text(res, 421, 'this listener answers requests for localhost only\n');
    } else if (req.method !== 'GET' && req.method !== 'HEAD') {
      text(res, 405, 'GET only\n');
    } else if (path === '/metrics') {
      monitor.registry.metrics().then(
        (body) =>
          res
            .writeHead(200, { 'content-type': monitor.registry.contentType, ...HEADERS })
            .end(body),
        (e: unknown) => this.failed(res, e),
      );
    } else if (path === '/devices') {
      const devices = this.o.devices ? this.o.devices() : monitor.snapshot();
      const body = JSON.stringify({ edgeId, ts: Date.now(), devices });
      res.writeHead(200, { 'content-type': 'application/json', ...HEADERS }).end(body);
    } else {
      text(res, 404, 'splitfleet edge: /metrics (Prometheus) or /devices (JSON)\n');
    }
  }

  private failed(res: ServerResponse, e: unknown): void {
    limitedLog.warn('metrics-http', { err: String(e) }, 'metrics request failed');
    try {
      if (!res.headersSent) text(res, 500, 'internal error\n');
      else res.destroy();
    } catch {
      res.destroy();
    }
  }
}
