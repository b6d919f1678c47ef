/**
 * The embedded Node-RED (edge-broker/node-red.ts) never answers without a login, and no
 * request ends it:
 * - with a credential file: the editor's admin API takes Node-RED logins of the operator
 *   (full) and dashboard (read-only) roles, nobody else; the dashboard, its socket.io
 *   endpoint (polling and websocket) and the sample images ask for an HTTP Basic login;
 * - without one: a generated admin password, given once, stored hashed (mode 0600), works
 *   again after a restart;
 * - a malformed URL gets 400 and the server keeps serving.
 * Node-RED is one per process: the credential-file instance runs in this process, the one
 * without credentials in a child process.
 */
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { get as httpGet, request } from 'node:http';
import { createServer } from 'node:net';
import { access, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PROJECT_ROOT } from '../../core/paths.js';
import { hashPassword, type CredentialFile } from '../../edge-broker/auth.js';
import { startNodeRed, type EmbeddedNodeRed } from '../../edge-broker/node-red.js';

const PASSWORDS = {
  op: 'operator-secret',
  viewer: 'viewer-secret',
  cam: 'device-secret',
  tenant: 'tenant-secret',
};
let nodeRed: EmbeddedNodeRed;
let dir: string;
const children: ChildProcess[] = [];

/** A port that nothing listens on: the example flows' edge connection just retries. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sf-nr-sec-'));
  const credentials: CredentialFile = {
    version: 1,
    users: {
      op: { role: 'operator', fleet: null, hash: await hashPassword(PASSWORDS.op) },
      viewer: { role: 'dashboard', fleet: null, hash: await hashPassword(PASSWORDS.viewer) },
      cam: { role: 'device', fleet: 'f', hash: await hashPassword(PASSWORDS.cam) },
      // an operator of one fleet: read-only in the editor (a flow runs code as the edge)
      tenant: { role: 'operator', fleet: 'f', hash: await hashPassword(PASSWORDS.tenant) },
    },
  };
  nodeRed = await startNodeRed({
    port: 0,
    host: '127.0.0.1',
    userDir: join(dir, 'with-credentials'),
    edgeUrl: `mqtt://127.0.0.1:${await closedPort()}`,
    credentials,
  });
});

test.after.always(async () => {
  for (const c of children) c.kill();
  await nodeRed?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A Node-RED admin token (the editor's own login exchange), or the refusal's status. */
async function token(
  base: string,
  username: string,
  password: string,
  scope = '*',
): Promise<{ status: number; token?: string }> {
  const res = await fetch(`${base}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_id: 'node-red-admin',
      grant_type: 'password',
      scope,
      username,
      password,
    }),
  });
  const body = (await res.json().catch(() => ({}))) as { access_token?: unknown };
  return {
    status: res.status,
    token: typeof body.access_token === 'string' ? body.access_token : undefined,
  };
}

const bearer = (t: string | undefined) => ({ authorization: `Bearer ${t ?? ''}` });
const basic = (u: string, p: string) => ({
  authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`,
});

/** A raw GET (fetch would normalize the path), or a websocket upgrade attempt. */
function rawGet(
  url: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, headers, timeout: 20_000 });
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0 });
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0 });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

const WEBSOCKET = {
  connection: 'Upgrade',
  upgrade: 'websocket',
  'sec-websocket-version': '13',
  'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
};

/** A flow whose inject node runs a shell command at deploy (what an attacker would post). */
function execFlow(marker: string) {
  return {
    label: 'pwn',
    nodes: [
      {
        id: 'pwn-inject',
        type: 'inject',
        once: true,
        onceDelay: 0.1,
        repeat: '',
        topic: '',
        payload: '',
        payloadType: 'date',
        wires: [['pwn-exec']],
      },
      {
        id: 'pwn-exec',
        type: 'exec',
        command: `touch ${marker}`,
        addpay: '',
        append: '',
        useSpawn: 'false',
        timer: '',
        winHide: false,
        wires: [[], [], []],
      },
    ],
  };
}

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

test.serial('anonymous GET /flows is refused with 401', async (t) => {
  const res = await fetch(`${nodeRed.url}/flows`);
  t.is(res.status, 401);
});

test.serial('an anonymous flow with an exec node is refused and never runs', async (t) => {
  const marker = join(dir, 'pwned');
  const res = await fetch(`${nodeRed.url}/flow`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(execFlow(marker)),
  });
  t.is(res.status, 401);
  const op = await token(nodeRed.url, 'op', PASSWORDS.op);
  const flows = await fetch(`${nodeRed.url}/flows`, { headers: bearer(op.token) });
  t.is(flows.status, 200);
  t.false((await flows.text()).includes('pwn-exec'), 'the flow was not deployed');
  t.false(await exists(marker));
});

test.serial('a dashboard login reads the flows but cannot deploy', async (t) => {
  t.not((await token(nodeRed.url, 'viewer', PASSWORDS.viewer, '*')).status, 200);
  const viewer = await token(nodeRed.url, 'viewer', PASSWORDS.viewer, 'read');
  t.is(viewer.status, 200);
  t.is((await fetch(`${nodeRed.url}/flows`, { headers: bearer(viewer.token) })).status, 200);
  const marker = join(dir, 'pwned-by-viewer');
  const post = await fetch(`${nodeRed.url}/flow`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bearer(viewer.token) },
    body: JSON.stringify(execFlow(marker)),
  });
  t.true(post.status === 401 || post.status === 403, `POST /flow: ${post.status}`);
  const deploy = await fetch(`${nodeRed.url}/flows`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bearer(viewer.token) },
    body: JSON.stringify([]),
  });
  t.true(deploy.status === 401 || deploy.status === 403, `POST /flows: ${deploy.status}`);
  t.false(await exists(marker));
});

test.serial('an operator of one fleet reads the flows but cannot deploy', async (t) => {
  t.not((await token(nodeRed.url, 'tenant', PASSWORDS.tenant, '*')).status, 200);
  const tenant = await token(nodeRed.url, 'tenant', PASSWORDS.tenant, 'read');
  t.is(tenant.status, 200);
  const marker = join(dir, 'pwned-by-tenant');
  const post = await fetch(`${nodeRed.url}/flow`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bearer(tenant.token) },
    body: JSON.stringify(execFlow(marker)),
  });
  t.true(post.status === 401 || post.status === 403, `POST /flow: ${post.status}`);
  t.false(await exists(marker));
});

test.serial('device logins and wrong passwords get no token', async (t) => {
  t.not((await token(nodeRed.url, 'cam', PASSWORDS.cam, 'read')).status, 200);
  t.not((await token(nodeRed.url, 'op', 'wrong', '*')).status, 200);
  t.not((await token(nodeRed.url, 'nobody', 'x', '*')).status, 200);
});

test.serial('an operator login deploys a flow', async (t) => {
  const op = await token(nodeRed.url, 'op', PASSWORDS.op);
  t.is(op.status, 200);
  const res = await fetch(`${nodeRed.url}/flow`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bearer(op.token) },
    body: JSON.stringify({
      label: 'ok',
      nodes: [{ id: 'ok-debug', type: 'debug', active: false, wires: [] }],
    }),
  });
  t.is(res.status, 200);
  // logging out ends the session
  const out = await fetch(`${nodeRed.url}/auth/revoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bearer(op.token) },
    body: JSON.stringify({ token: op.token }),
  });
  t.is(out.status, 200);
  t.is((await fetch(`${nodeRed.url}/flows`, { headers: bearer(op.token) })).status, 401);
});

test.serial(
  'the dashboard, its socket.io endpoint and the sample images ask for a login',
  async (t) => {
    const url = nodeRed.dashboardUrl;
    t.is((await fetch(`${url}/`)).status, 401);
    t.is((await fetch(`${url}/`, { headers: basic('viewer', 'wrong') })).status, 401);
    t.is((await fetch(`${url}/`, { headers: basic('cam', PASSWORDS.cam) })).status, 401);
    t.is((await fetch(`${url}/`, { headers: basic('viewer', PASSWORDS.viewer) })).status, 200);
    t.is((await fetch(`${url}/`, { headers: basic('op', PASSWORDS.op) })).status, 200);
    const polling = '/dashboard/socket.io/?EIO=4&transport=polling';
    t.is((await rawGet(nodeRed.url, polling)).status, 401);
    t.is((await rawGet(nodeRed.url, polling, basic('viewer', PASSWORDS.viewer))).status, 200);
    const ws = '/dashboard/socket.io/?EIO=4&transport=websocket';
    t.is((await rawGet(nodeRed.url, ws, WEBSOCKET)).status, 401);
    t.is(
      (await rawGet(nodeRed.url, ws, { ...WEBSOCKET, ...basic('op', PASSWORDS.op) })).status,
      101,
    );
    // the editor's own socket opens with a browser's dashboard login sent along
    const comms = { ...WEBSOCKET, ...basic('viewer', 'x') };
    t.is((await rawGet(nodeRed.url, '/comms', comms)).status, 101);
    const sample = `${nodeRed.url}/splitfleet/samples/`;
    t.is((await fetch(`${sample}x.png`)).status, 401);
  },
);

test.serial('a malformed URL gets 400 and the server keeps serving', async (t) => {
  t.is((await rawGet(nodeRed.url, '/%')).status, 400);
  t.is((await rawGet(nodeRed.url, '/splitfleet/samples/%E0%A4%A')).status, 400);
  t.is((await rawGet(nodeRed.url, '/dashboard/%')).status, 400);
  t.is((await fetch(`${nodeRed.url}/auth/login`)).status, 200);
});

test.serial('a rotated password ends its sessions; the old one is refused', async (t) => {
  const op = await token(nodeRed.url, 'op', PASSWORDS.op);
  t.is(op.status, 200);
  const flows = () => fetch(`${nodeRed.url}/flows`, { headers: bearer(op.token) });
  t.is((await flows()).status, 200);
  const rotated: CredentialFile = {
    version: 1,
    users: {
      op: { role: 'operator', fleet: null, hash: await hashPassword('rotated-secret') },
      viewer: { role: 'dashboard', fleet: null, hash: await hashPassword(PASSWORDS.viewer) },
    },
  };
  nodeRed.setCredentials(rotated);
  t.is((await flows()).status, 401);
  t.not((await token(nodeRed.url, 'op', PASSWORDS.op)).status, 200);
  t.is((await token(nodeRed.url, 'op', 'rotated-secret')).status, 200);
  // the old password no longer opens the dashboard either
  t.is((await rawGet(nodeRed.url, '/dashboard/', basic('op', PASSWORDS.op))).status, 401);
  nodeRed.setCredentials({
    version: 1,
    users: {
      op: { role: 'operator', fleet: null, hash: await hashPassword(PASSWORDS.op) },
      viewer: { role: 'dashboard', fleet: null, hash: await hashPassword(PASSWORDS.viewer) },
      cam: { role: 'device', fleet: 'f', hash: await hashPassword(PASSWORDS.cam) },
    },
  });
});

/** Node-RED without a credential file, in a child process; its first line of output. */
async function startAlone(userDir: string): Promise<{
  child: ChildProcess;
  url: string;
  generatedLogin?: { username: string; password: string };
}> {
  const script = join(dir, 'alone.mts');
  await writeFile(
    script,
    [
      `import { startNodeRed } from ${JSON.stringify(join(PROJECT_ROOT, 'edge-broker', 'node-red.ts'))};`,
      `const nr = await startNodeRed({ port: 0, host: '127.0.0.1', userDir: ${JSON.stringify(userDir)}, edgeUrl: 'mqtt://127.0.0.1:${await closedPort()}' });`,
      `process.stdout.write('started ' + JSON.stringify({ url: nr.url, generatedLogin: nr.generatedLogin }) + '\\n');`,
      `process.stdin.resume();`,
      `process.stdin.on('end', () => void nr.close().then(() => process.exit(0)));`,
    ].join('\n'),
  );
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: PROJECT_ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.push(child);
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('Node-RED did not start')), 120_000);
    // (Node-RED logs to stdout too)
    createInterface({ input: child.stdout! }).on('line', (l) => {
      if (!l.startsWith('started ')) return;
      clearTimeout(timer);
      resolve(l.slice('started '.length));
    });
    child.once('exit', (code) => reject(new Error(`Node-RED exited with ${code}`)));
  });
  return { child, ...(JSON.parse(line) as { url: string }) };
}

/** The status of a GET sent with this Host header (fetch sets its own). */
function statusWithHost(url: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.setTimeout(30_000, () => req.destroy(new Error('no answer')));
    req.on('error', reject);
  });
}

async function stopAlone(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.stdin?.end();
  await exited;
}

test.serial(
  'without a credential file: a generated admin password, given once, stored hashed with mode 0600',
  async (t) => {
    const userDir = join(dir, 'alone');
    const first = await startAlone(userDir);
    try {
      const login = first.generatedLogin;
      t.is(login?.username, 'admin');
      t.true((login?.password.length ?? 0) >= 16);
      t.is((await fetch(`${first.url}/flows`)).status, 401);
      const admin = await token(first.url, 'admin', login?.password ?? '');
      t.is(admin.status, 200);
      t.is((await fetch(`${first.url}/flows`, { headers: bearer(admin.token) })).status, 200);
      t.not((await token(first.url, 'admin', 'wrong')).status, 200);
      // the password is stored only as a hash, readable by its owner only
      let hashed = 0;
      for (const f of await readdir(userDir, { recursive: true })) {
        const path = join(userDir, f);
        if (!(await stat(path)).isFile()) continue;
        const text = await readFile(path, 'utf8');
        t.false(text.includes(login?.password ?? '?'), `${f} holds the password`);
        if (text.includes('scrypt$')) {
          hashed++;
          t.is((await stat(path)).mode & 0o777, 0o600, `${f} mode`);
        }
      }
      t.is(hashed, 1);
    } finally {
      await stopAlone(first.child);
    }
    const again = await startAlone(userDir);
    try {
      t.is(again.generatedLogin, undefined, 'the password is given once');
      t.is((await token(again.url, 'admin', first.generatedLogin?.password ?? '')).status, 200);
      // on loopback, a request naming another host (a web page through DNS rebinding) is refused
      t.is(await statusWithHost(`${again.url}/dashboard/`, 'evil.example'), 421);
      t.is(await statusWithHost(`${again.url}/flows`, 'evil.example:1880'), 421);
      t.is(await statusWithHost(`${again.url}/flows`, 'localhost:1880'), 401);
    } finally {
      await stopAlone(again.child);
    }
  },
);
