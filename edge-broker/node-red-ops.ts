/**
 * The operator console's controls in the embedded Node-RED (node-red.ts): the dashboard's
 * buttons call these routes, which send the op to the edge over MQTT (core/wire/rpc.ts)
 * and answer with the edge's answer.
 *
 *   GET  /splitfleet/ops/whoami                       { user, operator } of the login sent
 *   GET  /splitfleet/ops/login?back=/dashboard/...    asks for an operator login, then back
 *   POST /splitfleet/ops/<fleet>/device/<id>/<op>     a device op (DEVICE_OPS)
 *   POST /splitfleet/ops/<fleet>/edge/<id>/<op>       an edge op (EDGE_OPS)
 *
 * Only an operator (an `operator` of the credential file, or the generated `admin` login
 * without one) may send an op, checked here on every request from its HTTP Basic login:
 * a `dashboard` user gets 403 whatever its page shows, and an operator pinned to a fleet
 * gets 403 for any other fleet. With a credential file the op goes to the edge under the
 * operator's own MQTT login (the broker applies its fleet too), else under the flows'
 * login, if any. A POST must be JSON (`content-type: application/json`, at most 64 KiB,
 * an object nested at most BODY_DEPTH deep) and come from this server's own pages: a
 * browser's request that names another origin, or that says it is cross-site
 * (`sec-fetch-site`), is refused, so a page elsewhere cannot make a logged-in browser send
 * one. The answer is `{ status: 'ok', data }` (200) or `{ status: 'error', error }` with
 * the edge's message (422), no answer in time (504), the edge unreachable (502).
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connectAsync, type MqttClient } from 'mqtt';
import { limitedLog } from '../core/util/log.js';
import { DEVICE_OPS, EDGE_OPS, request } from '../core/wire/rpc.js';
import { deviceOpTopic, edgeOpTopic, isValidId, loginClientId } from '../core/wire/topics.js';
import { basicLogin, type Logins, type NodeRedUser } from './node-red-auth.js';

export const OPS_ROUTE = '/splitfleet/ops/';

export interface ConsoleOptions {
  /** The edge's broker, for the ops. */
  edgeUrl: string;
  /** How long an op waits for the edge's answer (default 15 s). */
  answerMs?: number;
  base: string;
  /** Who may log in: with a credential file its users, else the generated admin. */
  logins: Logins;
  /** True when the logins are the edge's credential file (the broker asks for them too). */
  brokerLogins: boolean;
  /** The flows' own edge login, used without a credential file. */
  username?: string;
  password?: string;
}

const BODY_MAX = 64 * 1024;
/** Arrays and objects nested deeper are refused: no op needs more, and the body is
 * serialized again (recursively) on its way to the edge. */
const BODY_DEPTH = 32;
/** Ops in flight at once; more are answered 503. */
const RUNNING_MAX = 4;
const CONNECT_MS = 10_000;
const ANSWER_MS = 15_000;
const BASIC = { 'www-authenticate': 'Basic realm="splitfleet", charset="UTF-8"' };

type Json = Record<string, unknown>;

function send(res: ServerResponse, status: number, body: Json, headers = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res
    .writeHead(status, {
      'content-type': 'application/json',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      ...headers,
    })
    .end(JSON.stringify(body));
}

const failed = (res: ServerResponse, status: number, error: string, headers = {}) =>
  send(res, status, { status: 'error', error }, headers);

/** The body of a request: a JSON object, 'bad' (not one), or 'large' (over BODY_MAX:
 * the rest is not read). */
function readJson(req: IncomingMessage): Promise<Json | 'bad' | 'large'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (v: Json | 'bad' | 'large') => {
      if (done) return;
      done = true;
      resolve(v);
    };
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > BODY_MAX) {
        req.pause();
        finish('large');
      } else chunks.push(c);
    });
    req.on('error', () => finish('bad'));
    req.on('end', () => {
      try {
        const text = Buffer.concat(chunks).toString('utf8') || '{}';
        if (nesting(text) > BODY_DEPTH) return finish('bad');
        const v: unknown = JSON.parse(text);
        finish(typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : 'bad');
      } catch {
        finish('bad');
      }
    });
  });
}

/** How deep the arrays and objects of a JSON text nest (brackets inside strings are not
 * counted); one pass, no recursion. */
function nesting(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) deepest = Math.max(deepest, ++depth);
    else if (c === 0x5d || c === 0x7d) depth--;
  }
  return deepest;
}

/** True when the request comes from this server's own pages, or from no browser page:
 * it names no origin or its own, and no browser says it is cross-site. */
function sameOrigin(req: IncomingMessage): boolean {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return false;
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

/** A dashboard path to go back to after a login, as a browser resolves it (`..` and
 * `%2e%2e` segments taken); anything else, on this server or not, goes to the dashboard. */
function backPath(url: string | undefined): string {
  const back = new URL(url ?? '/', 'http://x').searchParams.get('back') ?? '';
  if (!/^\/dashboard(\/[A-Za-z0-9_./?=&%-]*)?$/.test(back) || back.includes('//'))
    return '/dashboard';
  const to = new URL(back, 'http://x');
  const inside = to.pathname === '/dashboard' || to.pathname.startsWith('/dashboard/');
  return to.origin === 'http://x' && inside ? to.pathname + to.search : '/dashboard';
}

export class OperatorConsole {
  private running = 0;

  constructor(private readonly o: ConsoleOptions) {}

  /** Answer a request under OPS_ROUTE; never throws, never rejects. */
  handle(req: IncomingMessage, res: ServerResponse, path: string): void {
    this.serve(req, res, path).catch((e: unknown) => {
      limitedLog.warn('node-red-ops', { err: String(e).slice(0, 1024) }, 'console op failed');
      try {
        failed(res, 500, 'internal error');
      } catch {
        res.destroy();
      }
    });
  }

  /** The user of the request's Basic login, with its password; null: none or wrong. */
  private async login(
    req: IncomingMessage,
  ): Promise<{ user: NodeRedUser; password: string } | null | 'busy'> {
    const sent = basicLogin(req.headers.authorization);
    if (!sent) return null;
    const user = await this.o.logins.check(sent.username, sent.password);
    return user === 'busy' || user === null ? user : { user, password: sent.password };
  }

  private async serve(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const rest = path.slice(OPS_ROUTE.length);
    const login = await this.login(req);
    if (login === 'busy')
      return failed(res, 503, 'too many logins at once', { 'retry-after': '1' });
    if (req.method === 'GET' && rest === 'whoami') {
      // with a credential file every page is behind a login: ask the browser for it (it
      // sends the dashboard's); without one, nobody is logged in until /login
      if (!login && this.o.brokerLogins) return failed(res, 401, 'log in', BASIC);
      return send(res, 200, {
        user: login?.user.username ?? null,
        operator: login ? this.o.logins.operator(login.user.username) !== null : false,
      });
    }
    if (req.method === 'GET' && rest === 'login') {
      if (login && this.o.logins.operator(login.user.username)) {
        res.writeHead(302, { location: backPath(req.url), 'cache-control': 'no-store' }).end();
        return;
      }
      return failed(res, 401, 'log in as an operator', BASIC);
    }
    const m = /^([^/]+)\/(device|edge)\/([^/]+)\/([^/]+)$/.exec(rest);
    if (!m || req.method !== 'POST') {
      return failed(res, 404, `not an op: POST ${OPS_ROUTE}<fleet>/<device|edge>/<id>/<op>`);
    }
    if (!login) return failed(res, 401, 'log in as an operator', BASIC);
    const operates = this.o.logins.operator(login.user.username);
    if (!operates) {
      return failed(res, 403, `${login.user.username} may only read: log in as an operator`);
    }
    if (!sameOrigin(req)) return failed(res, 403, 'cross-site request refused');
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
      return failed(res, 415, 'the body must be JSON (content-type: application/json)');
    }
    const [, fleet = '', kind, id = '', op = ''] = m;
    const ops: readonly string[] = kind === 'device' ? DEVICE_OPS : EDGE_OPS;
    if (!isValidId(fleet) || !isValidId(id)) return failed(res, 400, 'fleet or id not valid');
    if (operates.fleet !== null && operates.fleet !== fleet) {
      return failed(res, 403, `${login.user.username} operates fleet ${operates.fleet} only`);
    }
    if (!ops.includes(op)) {
      return failed(res, 400, `unknown ${kind} op ${JSON.stringify(op.slice(0, 32))}`);
    }
    const body = await readJson(req);
    if (body === 'large') {
      // the rest of the body is never read: answer, then close the connection
      res.once('finish', () => req.socket.destroy());
      return failed(res, 413, `the body is over ${BODY_MAX} B`, { connection: 'close' });
    }
    if (body === 'bad') {
      return failed(res, 400, `the body must be a JSON object nested at most ${BODY_DEPTH} deep`);
    }
    if (this.running >= RUNNING_MAX) {
      return failed(res, 503, 'too many ops at once', { 'retry-after': '1' });
    }
    this.running++;
    try {
      const topic =
        kind === 'device'
          ? deviceOpTopic(fleet, id, 'request', op, this.o.base)
          : edgeOpTopic(fleet, id, 'request', op, this.o.base);
      // request() sets the correlation id of its own over any the body has
      const answer = await this.run(login, topic, body);
      if (answer.status === 'ok') send(res, 200, { status: 'ok', data: answer.data });
      else failed(res, answer.code, answer.error);
    } finally {
      this.running--;
    }
  }

  /** Send one op under the right login; the edge's answer, or why there is none. */
  private async run(
    login: { user: NodeRedUser; password: string },
    topic: string,
    body: Json,
  ): Promise<{ status: 'ok'; data: unknown } | { status: 'error'; code: number; error: string }> {
    const username = this.o.brokerLogins ? login.user.username : this.o.username;
    const password = this.o.brokerLogins ? login.password : this.o.password;
    let client: MqttClient;
    try {
      client = await connectAsync(this.o.edgeUrl, {
        reconnectPeriod: 0,
        connectTimeout: CONNECT_MS,
        clientId: username
          ? loginClientId(username, `console-${randomUUID().slice(0, 8)}`)
          : `console-${randomUUID().slice(0, 8)}`,
        ...(username ? { username, password: password ?? '' } : {}),
      });
    } catch (e) {
      // a socket error names the edge's address: the browser gets its code, the log the rest
      const code = (e as NodeJS.ErrnoException).code;
      const why =
        typeof code === 'string'
          ? code
          : (e instanceof Error ? e.message : String(e)).slice(0, 200);
      limitedLog.warn('node-red-ops-connect', { err: String(e) }, 'console op: edge unreachable');
      return { status: 'error', code: 502, error: `the edge refused or is unreachable: ${why}` };
    }
    try {
      const r = await request(client, topic, body, this.o.answerMs ?? ANSWER_MS);
      return r.status === 'ok'
        ? { status: 'ok', data: r.data }
        : { status: 'error', code: 422, error: r.error ?? 'the edge refused the op' };
    } catch (e) {
      return { status: 'error', code: 504, error: e instanceof Error ? e.message : String(e) };
    } finally {
      // forced: a subscription or request the edge never acknowledged would hold a plain
      // end() (and this op's slot) forever
      await client.endAsync(true).catch(() => undefined);
    }
  }
}
