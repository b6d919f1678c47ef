/**
 * The operator console's routes (edge-broker/node-red-ops.ts) on a plain HTTP server in
 * front of a real edge that requires logins, with a real agent: who may send an op, what
 * a request must look like, and that answers carry the edge's or the device's word. With
 * a credential file the op goes out under the operator's own login; without one (the
 * generated admin login) under the flows' login.
 */
import test from 'ava';
import { consoleUsers, OPERATOR, VIEWER } from '../helpers/credentials.js';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../device-agent/agent.js';
import { hashPassword, type CredentialFile } from '../../edge-broker/auth.js';
import type { Edge } from '../../edge-broker/edge.js';
import { generatedAdmin, Logins } from '../../edge-broker/node-red-auth.js';
import { OPS_ROUTE, OperatorConsole } from '../../edge-broker/node-red-ops.js';
import { testEdge } from '../helpers/edge.js';
import { shippedModel } from '../helpers/model.js';

const DEVICE = { username: 'gate', password: 'device-password' };

let edge: Edge;
let agent: Agent;
let run: Promise<unknown>;
let dir: string;
/** The console with the edge's credential file, and the one with a generated admin. */
let withFile: string;
let generated: { url: string; admin: { username: string; password: string } };
const servers: Server[] = [];

async function serve(o: ConstructorParameters<typeof OperatorConsole>[0]): Promise<string> {
  const ops = new OperatorConsole(o);
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path.startsWith(OPS_ROUTE)) ops.handle(req, res, path);
    else res.writeHead(404).end();
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const basic = (u: { username: string; password: string }) =>
  `Basic ${Buffer.from(`${u.username}:${u.password}`).toString('base64')}`;

function post(
  url: string,
  body: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
    redirect: 'manual',
  }).then(async (r) => ({
    status: r.status,
    body: (await r.json()) as Record<string, unknown>,
    headers: r.headers,
  }));
}

test.before(async () => {
  const credentials: CredentialFile = {
    version: 1,
    users: {
      ...(await consoleUsers()),
      [DEVICE.username]: {
        role: 'device',
        fleet: 'nr',
        hash: await hashPassword(DEVICE.password),
      },
    },
  };
  edge = await testEdge({ edgeId: 'edge-1', fleet: 'nr', access: { credentials } });
  agent = new Agent({
    url: edge.url,
    fleet: 'nr',
    deviceId: DEVICE.username,
    username: DEVICE.username,
    password: DEVICE.password,
    bundle: await shippedModel(),
    codec: 'split-q',
    point: 2,
    source: { source: 'sample', loop: true, limit: 100_000 },
    fps: 2,
  });
  await agent.start();
  run = agent.run();
  withFile = await serve({
    edgeUrl: edge.url,
    base: 'splitfleet',
    logins: Logins.fromCredentials(credentials),
    brokerLogins: true,
  });
  dir = await mkdtemp(join(tmpdir(), 'sf-ops-'));
  const admin = await generatedAdmin(dir);
  generated = {
    url: await serve({
      edgeUrl: edge.url,
      base: 'splitfleet',
      logins: admin.logins,
      brokerLogins: false,
      // the flows' own edge login
      ...OPERATOR,
    }),
    admin: admin.created!,
  };
});

test.after.always(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
  await agent?.stop(true);
  await run;
  await edge?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('whoami: the user of the login sent; with a credential file a missing login is asked for', async (t) => {
  const who = (url: string, auth?: string) =>
    fetch(`${url}${OPS_ROUTE}whoami`, { headers: auth ? { authorization: auth } : {} });
  const none = await who(withFile);
  t.is(none.status, 401);
  t.regex(none.headers.get('www-authenticate') ?? '', /^Basic realm="splitfleet"/);
  t.deepEqual(await (await who(withFile, basic(VIEWER))).json(), {
    user: 'viewer',
    operator: false,
  });
  t.deepEqual(await (await who(withFile, basic(OPERATOR))).json(), {
    user: 'op',
    operator: true,
  });
  // without a credential file nobody is logged in until /login; then the generated admin
  t.deepEqual(await (await who(generated.url)).json(), { user: null, operator: false });
  t.deepEqual(await (await who(generated.url, basic(generated.admin))).json(), {
    user: 'admin',
    operator: true,
  });
});

test('login: asks for an operator, then goes back to a dashboard page only', async (t) => {
  const login = (back: string, auth?: string) =>
    fetch(`${withFile}${OPS_ROUTE}login?back=${encodeURIComponent(back)}`, {
      headers: auth ? { authorization: auth } : {},
      redirect: 'manual',
    });
  t.is((await login('/dashboard/fleet')).status, 401);
  t.is((await login('/dashboard/fleet', basic(VIEWER))).status, 401);
  const ok = await login('/dashboard/device?device=nr/gate', basic(OPERATOR));
  t.is(ok.status, 302);
  t.is(ok.headers.get('location'), '/dashboard/device?device=nr/gate');
  for (const elsewhere of ['https://example.com/', '//example.com/dashboard', '/admin']) {
    t.is((await login(elsewhere, basic(OPERATOR))).headers.get('location'), '/dashboard');
  }
});

test('an op needs an operator login: none is asked for one, a dashboard user is refused', async (t) => {
  const url = `${withFile}${OPS_ROUTE}nr/device/gate/ping`;
  const none = await post(url, '{}');
  t.is(none.status, 401);
  t.regex(none.headers.get('www-authenticate') ?? '', /^Basic/);
  const viewer = await post(url, '{}', { authorization: basic(VIEWER) });
  t.is(viewer.status, 403);
  t.is(viewer.body.error, 'viewer may only read: log in as an operator');
  const wrong = await post(url, '{}', { authorization: basic({ ...OPERATOR, password: 'x' }) });
  t.is(wrong.status, 401);
});

test('the operator pings the device under its own login; the edge answers its own ops', async (t) => {
  const auth = { authorization: basic(OPERATOR) };
  const ping = await post(`${withFile}${OPS_ROUTE}nr/device/gate/ping`, '{}', auth);
  t.is(ping.status, 200, JSON.stringify(ping.body));
  t.is(ping.body.status, 'ok');
  t.is(typeof (ping.body.data as { ts: unknown }).ts, 'number');
  // an error answer carries the edge's message
  const rollback = await post(
    `${withFile}${OPS_ROUTE}nr/edge/edge-1/rollback`,
    JSON.stringify({ jobId: 'job-none' }),
    auth,
  );
  t.is(rollback.status, 422);
  t.deepEqual(rollback.body, { status: 'error', error: 'no job job-none' });
  // without a credential file: the generated admin, the flows' login on the broker
  const admin = await post(`${generated.url}${OPS_ROUTE}nr/device/gate/ping`, '{}', {
    authorization: basic(generated.admin),
  });
  t.is(admin.status, 200, JSON.stringify(admin.body));
});

test('requests that are not ops are refused before anything is sent', async (t) => {
  const auth = { authorization: basic(OPERATOR) };
  const base = `${withFile}${OPS_ROUTE}`;
  const cases: [string, string, Record<string, string>, number, RegExp][] = [
    ['nr/device/gate/self-destruct', '{}', {}, 400, /unknown device op "self-destruct"/],
    ['nr/edge/edge-1/ping', '{}', {}, 400, /unknown edge op "ping"/],
    ['n%2Fr/device/gate/ping', '{}', {}, 400, /not valid/],
    ['nr/device/gate/ping', '[1]', {}, 400, /JSON object/],
    ['nr/device/gate/ping', 'not json', {}, 400, /JSON object/],
    ['nr/device/gate/ping', '{}', { 'content-type': 'text/plain' }, 415, /JSON/],
    ['nr/device/gate/ping', '{}', { origin: 'http://elsewhere.example' }, 403, /cross-site/],
    ['nr/device/gate/ping', 'x'.repeat(70 * 1024), {}, 413, /over 65536 B/],
  ];
  for (const [path, body, headers, status, error] of cases) {
    const r = await post(`${base}${path}`, body, { ...auth, ...headers });
    t.is(r.status, status, path);
    t.regex(String(r.body.error), error, path);
  }
  const get = await fetch(`${base}nr/device/gate/ping`, { headers: auth });
  t.is(get.status, 404);
});
