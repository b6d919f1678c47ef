/**
 * The operator console's routes (edge-broker/node-red-ops.ts) attacked, in front of a real
 * edge that requires logins:
 * - an operator pinned to one fleet sends ops of its fleet only (403 for another, nothing
 *   sent), and gets read-only rights in the Node-RED editor (its flows would run code as
 *   the edge, beyond its fleet);
 * - device and worker logins, and no login, are never operators;
 * - a request a browser marks cross-site is refused even without an Origin header;
 * - a deeply nested body is refused before anything is sent (it would be serialized
 *   again, recursively, on its way to the edge);
 * - answers are never sniffed as anything but JSON.
 * What reaches the edge is counted on the broker by an operator's subscription.
 */
import test from 'ava';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { connectAsync, type MqttClient } from 'mqtt';
import { hashPassword, type CredentialFile } from '../../edge-broker/auth.js';
import type { Edge } from '../../edge-broker/edge.js';
import { Logins } from '../../edge-broker/node-red-auth.js';
import { OPS_ROUTE, OperatorConsole } from '../../edge-broker/node-red-ops.js';
import { edgeOpTopic, loginClientId } from '../../core/wire/topics.js';
import { testEdge } from '../helpers/edge.js';
import { waitFor } from '../helpers/wait.js';

const USERS = {
  all: { role: 'operator', fleet: null, password: 'all-fleets-password' },
  tenant: { role: 'operator', fleet: 'nr', password: 'tenant-password' },
  viewer: { role: 'dashboard', fleet: null, password: 'viewer-password' },
  gate: { role: 'device', fleet: 'nr', password: 'device-password' },
  work: { role: 'worker', fleet: null, password: 'worker-password' },
} as const;
type User = keyof typeof USERS;

let edge: Edge;
let server: Server;
let url: string;
let logins: Logins;
let watcher: MqttClient;
/** Every edge request the broker delivered, by topic. */
const seen: string[] = [];

const basic = (u: User) => `Basic ${Buffer.from(`${u}:${USERS[u].password}`).toString('base64')}`;

async function post(
  path: string,
  user: User | null,
  body = '{}',
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const r = await fetch(`${url}${OPS_ROUTE}${path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(user ? { authorization: basic(user) } : {}),
      ...headers,
    },
    body,
  });
  return {
    status: r.status,
    body: (await r.json()) as Record<string, unknown>,
    headers: r.headers,
  };
}

/** A request of `user` that the edge must see: every refusal before it sent nothing if
 * the count of requests seen is this one's alone. */
async function sentThrough(user: User): Promise<number> {
  const before = seen.length;
  const r = await post('nr/edge/edge-1/jobs', user);
  if (r.status !== 200) throw new Error(`jobs as ${user}: ${r.status} ${JSON.stringify(r.body)}`);
  await waitFor(() => seen.length > before);
  return seen.length - before;
}

test.before(async () => {
  const credentials: CredentialFile = { version: 1, users: {} };
  for (const [name, u] of Object.entries(USERS)) {
    credentials.users[name] = {
      role: u.role,
      fleet: u.fleet,
      hash: await hashPassword(u.password),
    };
  }
  edge = await testEdge({ edgeId: 'edge-1', fleet: 'nr', access: { credentials } });
  logins = Logins.fromCredentials(credentials);
  const ops = new OperatorConsole({
    edgeUrl: edge.url,
    base: 'splitfleet',
    logins,
    brokerLogins: true,
  });
  server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path.startsWith(OPS_ROUTE)) ops.handle(req, res, path);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  watcher = await connectAsync(edge.url, {
    username: 'all',
    password: USERS.all.password,
    clientId: loginClientId('all', 'watcher'),
    reconnectPeriod: 0,
  });
  watcher.on('message', (topic) => seen.push(topic));
  await watcher.subscribeAsync(edgeOpTopic('+', '+', 'request', '+'), { qos: 0 });
});

test.after.always(async () => {
  if (server) await new Promise((r) => server.close(r));
  await watcher?.endAsync();
  await edge?.close();
});

test.serial('an operator pinned to a fleet sends ops of that fleet only', async (t) => {
  const own = await post('nr/edge/edge-1/jobs', 'tenant');
  t.is(own.status, 200, JSON.stringify(own.body));
  const before = seen.length;
  const other = await post('other/edge/edge-1/jobs', 'tenant');
  t.is(other.status, 403);
  t.is(other.body.error, 'tenant operates fleet nr only');
  t.is(await sentThrough('tenant'), 1);
  t.is(seen.length - before, 1, 'the request of another fleet was never sent');
  const who = await fetch(`${url}${OPS_ROUTE}whoami`, {
    headers: { authorization: basic('tenant') },
  });
  t.deepEqual(await who.json(), { user: 'tenant', operator: true });
});

test.serial('an operator pinned to a fleet is read-only in the Node-RED editor', async (t) => {
  const auth = logins.adminAuth();
  const tenant = await auth.authenticate('tenant', USERS.tenant.password);
  t.is(tenant?.permissions, 'read');
  t.deepEqual(await auth.users('tenant'), { username: 'tenant', permissions: 'read' });
  const all = await auth.authenticate('all', USERS.all.password);
  t.is(all?.permissions, '*');
});

test.serial('devices, workers and no login are never operators', async (t) => {
  for (const user of ['gate', 'work', null] as const) {
    const r = await post('nr/edge/edge-1/jobs', user);
    t.is(r.status, 401, String(user));
    t.regex(r.headers.get('www-authenticate') ?? '', /^Basic/);
  }
  const viewer = await post('nr/edge/edge-1/set-config', 'viewer', '{"device":"gate"}');
  t.is(viewer.status, 403);
  const who = await fetch(`${url}${OPS_ROUTE}whoami`, {
    headers: { authorization: basic('gate') },
  });
  t.is(who.status, 401);
  const login = await fetch(`${url}${OPS_ROUTE}login?back=/dashboard`, {
    headers: { authorization: basic('work') },
    redirect: 'manual',
  });
  t.is(login.status, 401);
  const before = seen.length;
  t.is(await sentThrough('all'), 1);
  t.is(seen.length - before, 1, 'nothing of the refused requests reached the edge');
});

test.serial('a request a browser marks cross-site is refused without an Origin', async (t) => {
  const before = seen.length;
  for (const site of ['cross-site', 'same-site']) {
    const r = await post('nr/edge/edge-1/jobs', 'all', '{}', { 'sec-fetch-site': site });
    t.is(r.status, 403, site);
    t.is(r.body.error, 'cross-site request refused');
  }
  const own = await post('nr/edge/edge-1/jobs', 'all', '{}', { 'sec-fetch-site': 'same-origin' });
  t.is(own.status, 200);
  await waitFor(() => seen.length > before);
  t.is(seen.length - before, 1);
});

test.serial('a deeply nested body is refused before anything is sent', async (t) => {
  const before = seen.length;
  for (const depth of [33, 20_000]) {
    const body = `{"spec":${'['.repeat(depth)}${']'.repeat(depth)}}`;
    const r = await post('nr/edge/edge-1/rollout', 'all', body);
    t.is(r.status, 400, `depth ${depth}`);
    t.regex(String(r.body.error), /nested at most 32 deep/);
  }
  // brackets inside strings are text, not nesting
  const text = await post('nr/edge/edge-1/jobs', 'all', JSON.stringify({ note: '['.repeat(100) }));
  t.is(text.status, 200);
  await waitFor(() => seen.length > before);
  t.is(seen.length - before, 1);
});

test.serial('answers are JSON that a browser never sniffs as a page', async (t) => {
  const r = await post('nr/device/gate/ping', 'viewer');
  t.is(r.headers.get('x-content-type-options'), 'nosniff');
  t.is(r.headers.get('content-type'), 'application/json');
  t.is(r.headers.get('cache-control'), 'no-store');
});

test('an unreachable edge is answered 502 without its address', async (t) => {
  // a port that nothing listens on
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((r) => probe.close(r));
  const ops = new OperatorConsole({
    edgeUrl: `mqtt://127.0.0.1:${port}`,
    base: 'splitfleet',
    logins,
    brokerLogins: true,
  });
  const away = createServer((req, res) => ops.handle(req, res, (req.url ?? '/').split('?')[0]!));
  await new Promise<void>((r) => away.listen(0, '127.0.0.1', r));
  try {
    const r = await fetch(
      `http://127.0.0.1:${(away.address() as AddressInfo).port}${OPS_ROUTE}nr/edge/edge-1/jobs`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: basic('all') },
        body: '{}',
      },
    );
    t.is(r.status, 502);
    const { error } = (await r.json()) as { error: string };
    t.is(error, 'the edge refused or is unreachable: ECONNREFUSED');
    t.false(error.includes(String(port)));
  } finally {
    await new Promise((r) => away.close(r));
  }
});

test('login goes back to a dashboard page only, as the browser resolves the path', async (t) => {
  const back = async (to: string) =>
    (
      await fetch(`${url}${OPS_ROUTE}login?back=${encodeURIComponent(to)}`, {
        headers: { authorization: basic('all') },
        redirect: 'manual',
      })
    ).headers.get('location');
  for (const away of [
    '/dashboard/..',
    '/dashboard/../splitfleet/ops/nr/edge/edge-1/jobs',
    '/dashboard/.././',
    '/dashboard/%2e%2e/%2E%2e/admin',
    '/dashboard/../..//evil.example',
    'https://evil.example/dashboard',
    '/dashboard\\..\\x',
  ]) {
    t.is(await back(away), '/dashboard', away);
  }
  t.is(await back('/dashboard/device?device=nr/gate'), '/dashboard/device?device=nr/gate');
  t.is(await back('/dashboard/a/../fleet'), '/dashboard/fleet');
});

test('an edge that takes the connection and never answers frees the op slot', async (t) => {
  // a broker that accepts the login (CONNACK) and then ignores every packet, as a wedged
  // edge would: the op's subscription is never acknowledged
  const sockets: Socket[] = [];
  const wedged = createNetServer((s) => {
    sockets.push(s);
    s.once('data', () => s.write(Buffer.from([0x20, 0x02, 0x00, 0x00])));
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => wedged.listen(0, '127.0.0.1', r));
  const ops = new OperatorConsole({
    edgeUrl: `mqtt://127.0.0.1:${(wedged.address() as AddressInfo).port}`,
    base: 'splitfleet',
    logins,
    brokerLogins: true,
    answerMs: 200,
  });
  const front = createServer((req, res) => ops.handle(req, res, (req.url ?? '/').split('?')[0]!));
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  try {
    const at = `http://127.0.0.1:${(front.address() as AddressInfo).port}${OPS_ROUTE}nr/edge/edge-1/jobs`;
    // more ops than run at once (4), one after the other: each is answered, none is 503
    for (let i = 0; i < 6; i++) {
      const r = await fetch(at, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: basic('all') },
        body: '{}',
        signal: AbortSignal.timeout(30_000),
      });
      t.is(r.status, 504, `op ${i}`);
    }
    // every connection to the edge is closed (the edge's side sees it after the answer)
    await waitFor(() => sockets.length === 6 && sockets.every((s) => s.destroyed));
    t.is(sockets.length, 6);
  } finally {
    await new Promise((r) => front.close(r));
    for (const s of sockets) s.destroy();
    await new Promise((r) => wedged.close(r));
  }
});
