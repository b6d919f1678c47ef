/**
 * The edge op `set-config` and its overrides file (edge-broker/fleet/ops.ts, configs.ts,
 * fleet-config/overrides.ts), attacked on a real edge that requires logins:
 * - only an operator of the edge's fleet changes anything: a device, a dashboard user, a
 *   worker and an operator of another fleet are refused by the broker (their connection is
 *   closed) or by the edge, and neither the configs nor the overrides file change;
 * - every field of the body is checked (a field it does not know is refused);
 * - a change that cannot be kept answers why without naming the edge's files;
 * - ids are own keys: a device `__proto__` is overridden like any other;
 * - a change never makes a file larger than a start loads, and a torn or hand-broken file
 *   is refused at start naming the file.
 */
import test from 'ava';
import { connectAsync, type MqttClient } from 'mqtt';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashPassword, type CredentialFile } from '../../edge-broker/auth.js';
import type { Edge } from '../../edge-broker/edge.js';
import { request } from '../../core/wire/rpc.js';
import { edgeOpTopic, loginClientId } from '../../core/wire/topics.js';
import { parseFleet } from '../../fleet-config/load.js';
import {
  applyOverrides,
  emptyOverrides,
  loadOverrides,
  MAX_ENTRIES,
  parseOverrides,
  saveOverrides,
  withChange,
  type Overrides,
} from '../../fleet-config/overrides.js';
import { testEdge } from '../helpers/edge.js';

const FLEET = `
version: 1
fleet: sc
defaults: { codec: split-q, point: 1, fps: 2 }
groups:
  g: {}
devices:
  cam: { group: g }
  __proto__: {}
`;

const USERS = {
  all: { role: 'operator', fleet: null },
  tenant: { role: 'operator', fleet: 'other' },
  viewer: { role: 'dashboard', fleet: null },
  cam: { role: 'device', fleet: 'sc' },
  work: { role: 'worker', fleet: null },
} as const;
type User = keyof typeof USERS;
const password = (u: User) => `${u}-password`;

let edge: Edge;
let dir: string;
let overridesFile: string;

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sf-set-sec-'));
  overridesFile = join(dir, 'fleet.yaml.overrides.json');
  const credentials: CredentialFile = { version: 1, users: {} };
  for (const [name, u] of Object.entries(USERS))
    credentials.users[name] = {
      role: u.role,
      fleet: u.fleet,
      hash: await hashPassword(password(name as User)),
    };
  edge = await testEdge({
    edgeId: 'edge-sc',
    fleet: 'sc',
    fleetFile: parseFleet(FLEET),
    overridesFile,
    access: { credentials },
  });
});

test.after.always(async () => {
  await edge?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function login(user: User): Promise<MqttClient> {
  return connectAsync(edge.url, {
    username: user,
    password: password(user),
    clientId: USERS[user].role === 'device' ? 'sf-sc-cam' : loginClientId(user, 'set'),
    reconnectPeriod: 0,
  });
}

const setConfig = (c: MqttClient, body: Record<string, unknown>, fleet = 'sc') =>
  request(c, edgeOpTopic(fleet, 'edge-sc', 'request', 'set-config'), body, 20_000);

const wantedOf = (device: string) => edge.configs().get(device)?.wanted;

test.serial('only an operator of the fleet changes a config', async (t) => {
  const before = wantedOf('cam');
  const body = { device: 'cam', set: { fps: 7 } };
  // the broker refuses to deliver these: it closes the connection that publishes one
  for (const user of ['cam', 'viewer', 'work', 'tenant'] as const) {
    const c = await login(user);
    const closed = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${user}: still connected`)), 30_000);
      c.once('close', () => resolve(clearTimeout(timer)));
    });
    c.publish(edgeOpTopic('sc', 'edge-sc', 'request', 'set-config'), JSON.stringify(body));
    await closed;
    c.end(true);
    t.pass(`${user}: connection closed`);
  }
  // an operator of another fleet, on its own fleet's topic: the edge refuses it
  const tenant = await login('tenant');
  try {
    const r = await setConfig(tenant, body, 'other');
    t.is(r.status, 'error');
    t.is(r.error, 'this edge runs fleet sc, not other');
  } finally {
    await tenant.endAsync();
  }
  t.is(wantedOf('cam'), before);
  await t.throwsAsync(stat(overridesFile), { code: 'ENOENT' });
  const op = await login('all');
  try {
    const ok = await setConfig(op, body);
    t.is(ok.status, 'ok', ok.error ?? '');
    t.not(wantedOf('cam'), before);
    t.deepEqual(JSON.parse(await readFile(overridesFile, 'utf8')).devices, { cam: { fps: 7 } });
    // kept whole and private: no temporary file left beside it
    t.is((await stat(overridesFile)).mode & 0o777, 0o600);
    t.deepEqual(await readdir(dir), ['fleet.yaml.overrides.json']);
    t.like(await setConfig(op, { device: 'cam', set: { fps: null } }), { status: 'ok' });
  } finally {
    await op.endAsync();
  }
});

test.serial('every field of a set-config is checked', async (t) => {
  const op = await login('all');
  try {
    const before = wantedOf('cam');
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ device: 'cam', set: { fps: 2 }, force: true }, /unknown field "force"/],
      [{ devcie: 'cam', set: { fps: 2 } }, /unknown field "devcie"/],
      [{ device: 'cam', group: 'g', set: { fps: 2 } }, /exactly one of device and group/],
      [{ device: 'cam/#', set: { fps: 2 } }, /device must be an id/],
      [{ device: 'cam', set: { fps: 1e9 } }, /fps/],
      [{ device: 'cam', set: { fps: -1 } }, /fps/],
      [{ device: 'cam', set: { point: 1.5 } }, /point: not an integer/],
      [{ device: 'cam', set: { codec: 'x'.repeat(33) } }, /codec: not a codec name/],
      [{ device: 'cam', set: { model: 'other' } }, /unknown setting "model"/],
      [{ device: 'nobody', set: { fps: 2 } }, /has no device "nobody"/],
      [{ device: 'toString', set: { fps: 2 } }, /has no device "toString"/],
      [{ group: 'constructor', set: { fps: 2 } }, /has no group "constructor"/],
      [{ device: 'cam', set: {} }, /set names none of/],
    ];
    for (const [body, error] of cases) {
      const r = await setConfig(op, body);
      t.is(r.status, 'error', JSON.stringify(body));
      t.regex(r.error ?? '', error, JSON.stringify(body));
    }
    t.is(wantedOf('cam'), before);
  } finally {
    await op.endAsync();
  }
});

test.serial('a device named __proto__ is overridden, kept and laid on', async (t) => {
  const op = await login('all');
  try {
    const r = await setConfig(op, { device: '__proto__', set: { fps: 3 } });
    t.is(r.status, 'ok', r.error ?? '');
    const kept = JSON.parse(await readFile(overridesFile, 'utf8')) as Overrides;
    t.true(Object.hasOwn(kept.devices, '__proto__'));
    t.deepEqual(Object.keys(kept.devices), ['__proto__']);
    t.is(edge.configs().get('__proto__')?.settings.fps, 3);
    t.deepEqual(edge.configs().get('__proto__')?.overridden, ['fps']);
    t.like(await setConfig(op, { device: '__proto__', set: { fps: null } }), { status: 'ok' });
  } finally {
    await op.endAsync();
  }
  // and from a file: own entries, never the prototype of the section
  const o = parseOverrides('{"version":1,"devices":{"__proto__":{"fps":4}}}', 'f.json');
  t.deepEqual(Object.keys(o.devices), ['__proto__']);
  t.is(Object.getPrototypeOf(o.devices), Object.prototype);
  const f = parseFleet(FLEET);
  t.is(applyOverrides(f, o).fleet.devices.__proto__?.fps, 4);
  t.is(Object.getPrototypeOf(applyOverrides(f, o).fleet.devices), Object.prototype);
});

test.serial('a change cannot be kept: the answer says why, not where', async (t) => {
  const away = await testEdge({
    edgeId: 'edge-sc',
    fleet: 'sc',
    fleetFile: parseFleet(FLEET),
    overridesFile: join(dir, 'missing', 'secret-place', 'fleet.yaml.overrides.json'),
  });
  const op = await connectAsync(away.url, { reconnectPeriod: 0 });
  try {
    const before = away.configs().get('cam')?.wanted;
    const r = await request(
      op,
      edgeOpTopic('sc', 'edge-sc', 'request', 'set-config'),
      { device: 'cam', set: { fps: 9 } },
      20_000,
    );
    t.is(r.status, 'error');
    t.is(r.error, 'the change could not be kept (ENOENT): nothing changed');
    t.is(away.configs().get('cam')?.wanted, before);
  } finally {
    await op.endAsync();
    await away.close();
  }
});

test.serial('a leftover override of an id the file lacks can be removed, not set', async (t) => {
  const file = join(dir, 'leftovers.overrides.json');
  const overrides = parseOverrides(
    '{"version":1,"groups":{"old-group":{"fps":1}},"devices":{"gone":{"fps":1},"cam":{"fps":2}}}',
    file,
  );
  await saveOverrides(file, overrides);
  const e = await testEdge({
    edgeId: 'edge-sc',
    fleet: 'sc',
    fleetFile: parseFleet(FLEET),
    overrides,
    overridesFile: file,
  });
  const op = await connectAsync(e.url, { reconnectPeriod: 0 });
  const set = (body: Record<string, unknown>) =>
    request(op, edgeOpTopic('sc', 'edge-sc', 'request', 'set-config'), body, 20_000);
  try {
    t.regex((await set({ device: 'gone', set: { fps: 3 } })).error ?? '', /has no device "gone"/);
    t.regex((await set({ device: 'never', set: { fps: null } })).error ?? '', /no device "never"/);
    const gone = await set({ device: 'gone', set: { fps: null } });
    t.is(gone.status, 'ok', gone.error ?? '');
    t.deepEqual(gone.data, { devices: [], persisted: file });
    const group = await set({ group: 'old-group', set: { fps: null } });
    t.is(group.status, 'ok', group.error ?? '');
    t.deepEqual(JSON.parse(await readFile(file, 'utf8')), {
      version: 1,
      groups: {},
      devices: { cam: { fps: 2 } },
    });
  } finally {
    await op.endAsync();
    await e.close();
  }
});

test('a change never makes more entries than a start loads', (t) => {
  const devices = Object.fromEntries(
    Array.from({ length: MAX_ENTRIES }, (_, i) => [`d${i}`, { fps: 1 }]),
  );
  const full: Overrides = { ...emptyOverrides(), devices };
  t.throws(() => withChange(full, { target: { device: 'one-more' }, set: { fps: 2 } }), {
    message: /hold 100000 devices already/,
  });
  // changing or removing one that is there is fine, and what is written loads again
  const changed = withChange(full, { target: { device: 'd7' }, set: { fps: 3 } });
  t.is(changed.devices.d7?.fps, 3);
  const removed = withChange(full, { target: { device: 'd7' }, set: { fps: null } });
  t.is(Object.keys(removed.devices).length, MAX_ENTRIES - 1);
  const grown = withChange(removed, { target: { device: 'one-more' }, set: { fps: 2 } });
  t.is(Object.keys(parseOverrides(JSON.stringify(grown), 'f').devices).length, MAX_ENTRIES);
});

test('a torn or hand-broken overrides file is refused at start, naming the file', async (t) => {
  const d = await mkdtemp(join(tmpdir(), 'sf-ovr-'));
  try {
    const file = join(d, 'fleet.yaml.overrides.json');
    await saveOverrides(
      file,
      withChange(emptyOverrides(), { target: { group: 'g' }, set: { fps: 2 } }),
    );
    t.deepEqual((await loadOverrides(file)).groups, { g: { fps: 2 } });
    const whole = await readFile(file, 'utf8');
    for (const [text, error] of [
      [whole.slice(0, whole.length / 2), /not valid JSON|Unexpected|Expected/],
      ['', /Unexpected end|not valid JSON/],
      ['{"version":1,"devices":{"cam":{"fps":"9"}}}', /devices\.cam\.fps: not a number/],
      ['{"version":1,"devices":{"a/b":{}}}', /invalid id "a\/b"/],
      ['{"version":1,"devices":{},"admin":true}', /unknown field "admin"/],
      ['{"version":2}', /version 2/],
      ['[]', /not an object/],
    ] as const) {
      await writeFile(file, text);
      const e = await t.throwsAsync(loadOverrides(file));
      t.true(e?.message.startsWith(`overrides file ${file}: `), e?.message);
      t.regex(e?.message ?? '', error);
    }
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});
