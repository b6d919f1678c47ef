/**
 * Node-RED embedded next to the edge (`splitfleet edge --node-red`): the editor at
 * `http://host:1880/`, the dashboard (@flowfuse/node-red-dashboard) at `/dashboard`, the
 * splitfleet node package (flows/) loaded, and on the first start the example flows
 * (alert, rollout with approval, dashboard) deployed with their edge connection pointed
 * at this edge. Node-RED keeps its state (flows, credentials, context) in `userDir`.
 *
 * The editor always asks for a login (node-red-auth.ts): the operator and dashboard
 * users of the edge's credential file, or a generated `admin` password when there is
 * none. With a credential file, the dashboard and everything else served under it asks
 * for an HTTP Basic login of those users too. A request that cannot be read (a malformed
 * URL) gets 400; a handler that fails answers 500; neither ends the process.
 *
 * The dashboard's operator controls (ping, config changes, rollouts) call the routes of
 * node-red-ops.ts under `/splitfleet/ops/`, which check for an operator login themselves.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createServer, IncomingMessage, ServerResponse, type Server } from 'node:http';
import { access, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';
import { Duplex } from 'node:stream';
import RED from 'node-red';
import { PROJECT_ROOT, SAMPLE_DIR } from '../core/paths.js';
import { limitedLog, log } from '../core/util/log.js';
import { DEFAULT_BASE } from '../core/wire/topics.js';
import type { CredentialFile } from './auth.js';
import { listen, shownHost } from './broker.js';
import { generatedAdmin, Logins } from './node-red-auth.js';
import { OPS_ROUTE, OperatorConsole } from './node-red-ops.js';
import { isLoopback, loopbackHostHeader } from './fleet/http.js';

export const FLOWS_DIR = join(PROJECT_ROOT, 'flows');
const EXAMPLES = join(FLOWS_DIR, 'examples');
/** The id of the edge connection (config node) the example flows share. */
const EDGE_NODE = 'sf-edge';

export interface NodeRedOptions {
  port: number;
  host: string;
  userDir: string;
  /** The edge broker the flows (and the console's ops) connect to. */
  edgeUrl: string;
  /** The edge's base topic (default `splitfleet`). */
  base?: string;
  /** A login for the flows' edge connection when the edge requires one (an operator). */
  username?: string;
  password?: string;
  /** The edge's users: operators and dashboard users log in to the editor and the
   * dashboard. Without it, the editor takes a generated `admin` login and the dashboard
   * is open (to whoever reaches `host`). */
  credentials?: CredentialFile;
}

export interface EmbeddedNodeRed {
  url: string;
  dashboardUrl: string;
  /** The editor's generated login, on the first start without credentials only: show it
   * to the user once, it is stored only hashed. */
  generatedLogin?: { username: string; password: string };
  /** Replace the users of the credential file (an edit): see Logins.setCredentials. */
  setCredentials(file: CredentialFile): void;
  close(): Promise<void>;
}

interface FlowNode {
  id: string;
  type: string;
  [k: string]: unknown;
}

/** The example flows as one flow file, sharing one edge connection to `edgeUrl`. */
export async function exampleFlows(edgeUrl: string): Promise<FlowNode[]> {
  const out = new Map<string, FlowNode>();
  for (const f of (await readdir(EXAMPLES)).filter((n) => /^0[1-9].*\.json$/.test(n)).sort()) {
    for (const n of JSON.parse(await readFile(join(EXAMPLES, f), 'utf8')) as FlowNode[]) {
      out.set(n.id, n.id === EDGE_NODE ? { ...n, url: edgeUrl } : n);
    }
  }
  return [...out.values()];
}

/** Node-RED's own credentials format (aes-256-ctr, key sha256(secret), hex IV first). */
function encryptCredentials(secret: string, creds: unknown): { $: string } {
  const key = createHash('sha256').update(secret).digest();
  const iv = randomBytes(16);
  const c = createCipheriv('aes-256-ctr', key, iv);
  return {
    $: iv.toString('hex') + c.update(JSON.stringify(creds), 'utf8', 'base64') + c.final('base64'),
  };
}

/** Where the dashboard finds the shipped sample's images (frames tagged with their name). */
export const SAMPLES_ROUTE = '/splitfleet/samples/';

/** Serve an image of the shipped sample at `path` (decoded, under SAMPLES_ROUTE). */
function serveSample(path: string, res: ServerResponse): void {
  const file = resolve(SAMPLE_DIR, path.slice(SAMPLES_ROUTE.length));
  const type = { '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.png': 'image/png' }[
    extname(file).toLowerCase()
  ];
  if (!file.startsWith(SAMPLE_DIR + sep) || !type) {
    res.writeHead(404).end();
    return;
  }
  readFile(file).then(
    (bytes) =>
      res.writeHead(200, { 'content-type': type, 'cache-control': 'max-age=3600' }).end(bytes),
    () => res.writeHead(404).end(),
  );
}

/** The path of a request, decoded; null when it cannot be decoded. */
function requestPath(req: IncomingMessage): { raw: string; decoded: string } | null {
  const raw = (req.url ?? '/').split('?')[0] ?? '/';
  try {
    return { raw, decoded: decodeURIComponent(raw) };
  } catch {
    return null;
  }
}

/** Answer `status` unless an answer has started; never throws. */
function reply(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
  try {
    if (res.headersSent) res.destroy();
    else res.writeHead(status, { 'content-type': 'text/plain', ...headers }).end(`${status}\n`);
  } catch {
    res.destroy();
  }
}

/** Answer an upgrade request with `status` and close it. */
function refuseUpgrade(socket: Duplex, status: number, headers: Record<string, string> = {}) {
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
  socket.end(
    `HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : 'Refused'}\r\n${lines.join('')}` +
      'connection: close\r\ncontent-length: 0\r\n\r\n',
  );
}

/** The status of an error an express app passed on: its own 4xx, else 500. */
function errorStatus(err: unknown): number {
  const s: unknown =
    typeof err === 'object' && err !== null
      ? ((err as Record<string, unknown>).status ?? (err as Record<string, unknown>).statusCode)
      : undefined;
  return typeof s === 'number' && s >= 400 && s < 500 ? s : 500;
}

function handlerFailed(res: ServerResponse, err: unknown): void {
  const status = errorStatus(err);
  if (status === 500) {
    limitedLog.warn(
      `node-red-http:${String(err).slice(0, 80)}`,
      { err: String(err).slice(0, 1024) },
      'node-red: request failed',
    );
  }
  reply(res, status);
}

const BASIC = { 'www-authenticate': 'Basic realm="splitfleet", charset="UTF-8"' };

/** An express app (or a route of one) as a plain request handler. */
type Handler = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

/** The token of an `Authorization: Bearer ...` header, or null. */
function bearerToken(req: IncomingMessage): string | null {
  const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
  return m?.[1] ?? null;
}

/** Node-RED's websocket for the editor, which checks the editor's logins itself. */
const COMMS_PATH = '/comms';

/**
 * Every request and upgrade passes here before any listener of `server` (Node-RED's,
 * the dashboard's socket.io) sees it: a malformed URL gets 400, the sample images are
 * served, the admin app (the editor and its API, behind Node-RED's own login) answers its
 * routes, and, with `logins`, everything else (the dashboard, its socket.io requests and
 * upgrades, HTTP-in nodes) needs an HTTP Basic login first. `sessions` keeps the editor's
 * logins (a log-out ends one).
 */
/** One line of Node-RED's log (its levels: 10 fatal, 20 error, 30 warn, ...). */
function nodeRedLine(m: unknown): void {
  if (typeof m !== 'object' || m === null) return;
  const { level, msg } = m as { level?: unknown; msg?: unknown };
  const text = typeof msg === 'string' ? msg : msg instanceof Error ? msg.message : String(msg);
  if (typeof level === 'number' && level <= 20) log.error({ from: 'node-red' }, text);
  else log.warn({ from: 'node-red' }, text);
}

function guardServer(
  server: Server,
  admin: Handler,
  sessions: Logins,
  logins: Logins | null,
  ops: OperatorConsole,
  /** Refuse requests naming a host other than this one (an open Node-RED on loopback: a web
   * page must not reach it through DNS rebinding). */
  loopbackOnly: boolean,
): void {
  const emit = server.emit.bind(server) as (event: string | symbol, ...args: unknown[]) => boolean;
  const allowed = async (req: IncomingMessage): Promise<'yes' | 'no' | 'busy'> => {
    if (!logins) return 'yes';
    const user = await logins.basic(req.headers.authorization);
    return user === 'busy' ? 'busy' : user ? 'yes' : 'no';
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (loopbackOnly && !loopbackHostHeader(req.headers.host)) return reply(res, 421);
    const path = requestPath(req);
    if (!path) return reply(res, 400);
    const gated = (then: () => void) => {
      allowed(req)
        .then((a) => {
          if (a === 'yes') then();
          else if (a === 'busy') reply(res, 503, { 'retry-after': '1' });
          else reply(res, 401, BASIC);
        })
        .catch((e: unknown) => handlerFailed(res, e));
    };
    if (path.raw === '/auth/revoke' && req.method === 'POST') {
      // the editor logs out with its own token: end that session once Node-RED agrees
      const token = bearerToken(req);
      res.once('finish', () => res.statusCode === 200 && sessions.revoke(token));
    }
    if (path.raw.startsWith(OPS_ROUTE)) return ops.handle(req, res, path.raw);
    if (path.raw.startsWith(SAMPLES_ROUTE) && req.method === 'GET') {
      return gated(() => serveSample(path.decoded, res));
    }
    admin(req, res, (err) => {
      if (err) handlerFailed(res, err);
      else gated(() => emit('request', req, res));
    });
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => socket.destroy());
    if (loopbackOnly && !loopbackHostHeader(req.headers.host)) return refuseUpgrade(socket, 421);
    const path = requestPath(req);
    if (!path) return refuseUpgrade(socket, 400);
    if (path.raw === COMMS_PATH) {
      // the editor logs in over the socket or with a bearer token; a browser's Basic login
      // of the dashboard, sent along, would make Node-RED refuse the socket
      if (!bearerToken(req)) delete req.headers.authorization;
      emit('upgrade', req, socket, head);
      return;
    }
    if (!logins) {
      emit('upgrade', req, socket, head);
      return;
    }
    allowed(req)
      .then((a) => {
        if (a === 'yes') emit('upgrade', req, socket, head);
        else if (a === 'busy') refuseUpgrade(socket, 503, { 'retry-after': '1' });
        else refuseUpgrade(socket, 401, BASIC);
      })
      .catch(() => socket.destroy());
  };

  const guarded = (event: string | symbol, ...args: unknown[]): boolean => {
    const [req, out, head] = args;
    if (event === 'request' && req instanceof IncomingMessage && out instanceof ServerResponse) {
      try {
        onRequest(req, out);
      } catch (e) {
        handlerFailed(out, e);
      }
      return true;
    }
    if (event === 'upgrade' && req instanceof IncomingMessage && out instanceof Duplex) {
      try {
        onUpgrade(req, out, Buffer.isBuffer(head) ? head : Buffer.alloc(0));
      } catch {
        out.destroy();
      }
      return true;
    }
    return emit(event, ...args);
  };
  server.emit = guarded as typeof server.emit;
}

/** Resolves once Node-RED has started the flows, or says why it will not (missing node
 * types, safe mode), or after `ms` at the latest. */
function flowsStarted(ms = 60_000): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      RED.events.off('flows:started', done);
      RED.events.off('runtime-event', onEvent);
      resolve();
    };
    const onEvent = (e: unknown) => {
      if (typeof e !== 'object' || e === null) return;
      const { id, payload } = e as { id?: unknown; payload?: unknown };
      const state =
        typeof payload === 'object' && payload !== null
          ? (payload as { state?: unknown }).state
          : undefined;
      if (id === 'runtime-state' && (state === 'stop' || state === 'safe')) done();
    };
    const timer = setTimeout(() => {
      log.warn({ ms }, 'node-red: the flows have not started yet');
      done();
    }, ms);
    RED.events.on('flows:started', done);
    RED.events.on('runtime-event', onEvent);
  });
}

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

export async function startNodeRed(o: NodeRedOptions): Promise<EmbeddedNodeRed> {
  // created readable by its owner only: it holds the flows, their credentials and the login
  await mkdir(o.userDir, { recursive: true, mode: 0o700 });
  const secretFile = join(o.userDir, '.splitfleet-secret');
  if (!(await exists(secretFile))) {
    await writeFile(secretFile, randomBytes(24).toString('hex'), { mode: 0o600 });
  }
  const secret = (await readFile(secretFile, 'utf8')).trim();
  const flowFile = join(o.userDir, 'flows.json');
  if (!(await exists(flowFile))) {
    await writeFile(flowFile, JSON.stringify(await exampleFlows(o.edgeUrl), null, 2));
    log.info({ flowFile }, 'node-red: example flows written');
  }
  if (o.username) {
    const creds = { [EDGE_NODE]: { username: o.username, password: o.password ?? '' } };
    await writeFile(
      join(o.userDir, 'flows_cred.json'),
      JSON.stringify(encryptCredentials(secret, creds)),
      {
        mode: 0o600,
      },
    );
  }
  const login = o.credentials
    ? { logins: Logins.fromCredentials(o.credentials), created: undefined }
    : await generatedAdmin(o.userDir);
  if (o.credentials && !login.logins.hasOperator) {
    log.warn(
      'node-red: the credential file has no operator of every fleet, nobody can deploy flows',
    );
  }
  // Node-RED's express apps as plain request handlers (no express app of our own)
  // (read per request: Node-RED creates them in init())
  const admin: Handler = (req, res, next) => (RED.httpAdmin as unknown as Handler)(req, res, next);
  const nodes: Handler = (req, res, next) => (RED.httpNode as unknown as Handler)(req, res, next);
  // What Node-RED's own listeners and the dashboard's socket.io see: the node routes.
  const server: Server = createServer((req, res) => {
    try {
      nodes(req, res, (err) => (err ? handlerFailed(res, err) : reply(res, 404)));
    } catch (e) {
      handlerFailed(res, e);
    }
  });
  const ops = new OperatorConsole({
    edgeUrl: o.edgeUrl,
    base: o.base ?? DEFAULT_BASE,
    logins: login.logins,
    brokerLogins: Boolean(o.credentials),
    username: o.username,
    password: o.password,
  });
  guardServer(
    server,
    admin,
    login.logins,
    o.credentials ? login.logins : null,
    ops,
    !o.credentials && isLoopback(o.host),
  );
  // settings of Node-RED 4 (its published types describe 1.x)
  const settings = {
    userDir: o.userDir,
    flowFile: 'flows.json',
    credentialSecret: secret,
    adminAuth: login.logins.adminAuth(),
    httpAdminRoot: '/',
    httpNodeRoot: '/',
    uiHost: o.host,
    uiPort: o.port,
    nodesDir: [FLOWS_DIR],
    functionExternalModules: false,
    externalModules: { palette: { allowInstall: false }, modules: { allowInstall: false } },
    editorTheme: { projects: { enabled: false }, tours: false },
    diagnostics: { enabled: false },
    telemetry: { enabled: false },
    // Node-RED's warnings and errors go through the project's logger (one format, the
    // test suite's log file), not its own console lines
    logging: {
      console: { level: 'off' },
      splitfleet: { level: 'warn', metrics: false, audit: false, handler: () => nodeRedLine },
    },
  };
  RED.init(server, settings as unknown as Parameters<typeof RED.init>[1]);
  const port = await listen(server, o.port, o.host, '--node-red-port');
  // RED.start() resolves before the flows run; a close() before then would leave them
  // running (their connections open)
  const flowsRunning = flowsStarted();
  await RED.start();
  await flowsRunning;
  const url = `http://${shownHost(o.host)}:${port}`;
  log.info({ url, dashboard: `${url}/dashboard` }, 'node-red up');
  return {
    url,
    dashboardUrl: `${url}/dashboard`,
    ...(login.created ? { generatedLogin: login.created } : {}),
    setCredentials(file) {
      if (!o.credentials) throw new Error('Node-RED was started without a credential file');
      login.logins.setCredentials(file);
    },
    async close() {
      await RED.stop();
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await closed;
    },
  };
}
