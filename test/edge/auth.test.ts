/**
 * Broker security over real sockets: credentials (salted scrypt), refused connects,
 * ACLs per role, session takeover, payload and rate limits.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync, type MqttClient } from 'mqtt';
import {
  hashPassword,
  parseCredentials,
  verifyPassword,
  type CredentialFile,
} from '../../edge-broker/auth.js';
import { startBroker, type EdgeBroker } from '../../edge-broker/broker.js';
import { deviceClientId, deviceTopic } from '../../core/wire/topics.js';

const PW = { cam1: 'cam1-secret', cam2: 'cam2-secret', ops: 'ops-secret', dash: 'dash-secret' };

async function store(): Promise<CredentialFile> {
  return {
    version: 1,
    users: {
      cam1: { role: 'device', fleet: 'f', hash: await hashPassword(PW.cam1) },
      cam2: { role: 'device', fleet: 'f', hash: await hashPassword(PW.cam2) },
      ops: { role: 'operator', fleet: null, hash: await hashPassword(PW.ops) },
      dash: { role: 'dashboard', fleet: 'f', hash: await hashPassword(PW.dash) },
    },
  };
}

let broker: EdgeBroker;
test.before(async () => {
  broker = await startBroker({
    port: 0,
    wsPort: null,
    access: { credentials: await store(), maxPayloadBytes: 1024 },
  });
});
test.after.always(() => broker?.close());

const opts = (user: string, password: string, clientId?: string) => ({
  username: user,
  password,
  clientId:
    clientId ?? (user.startsWith('cam') ? deviceClientId('f', user) : `${user}:t-${Math.random()}`),
  reconnectPeriod: 0,
  connectTimeout: 30_000, // a login runs scrypt: slow on a loaded machine, never a verdict
});

/** The QoS the broker granted per topic (128: refused); mqtt.js rejects on any 128. */
async function granted(c: MqttClient, topics: string[]): Promise<number[]> {
  try {
    return (await c.subscribeAsync(topics, { qos: 1 })).map((g) => g.qos);
  } catch (e) {
    const packet = (e as { packet?: { granted?: number[] } }).packet;
    if (!packet?.granted) throw e;
    return packet.granted;
  }
}

/** Resolves when the client is closed by the broker (or after ms, false). */
function closedWithin(c: MqttClient, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    c.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

test('passwords are stored as salted scrypt hashes and verified in constant time', async (t) => {
  const a = await hashPassword('x');
  const b = await hashPassword('x');
  t.not(a, b); // salted
  t.regex(a, /^scrypt\$16384\$8\$1\$/);
  t.false(a.includes('x$'));
  t.true(await verifyPassword('x', a));
  t.false(await verifyPassword('y', a));
  t.false(await verifyPassword('x', 'md5$whatever'));
  t.throws(
    () =>
      parseCredentials(
        '{"version":1,"users":{"d":{"role":"device","fleet":null,"hash":"' + a + '"}}}',
      ),
    {
      message: /device d needs a fleet/,
    },
  );
  t.throws(
    () => parseCredentials('{"version":1,"users":{"d":{"role":"root","fleet":null,"hash":"x"}}}'),
    {
      message: /invalid credential file/,
    },
  );
});

test('unknown users and wrong passwords are refused at connect with CONNACK 4', async (t) => {
  for (const [u, p] of [
    ['cam1', 'wrong'],
    ['nobody', 'x'],
  ] as const) {
    const err = await t.throwsAsync(connectAsync(broker.url, opts(u, p)));
    t.regex(err?.message ?? '', /Bad username or password/i, `${u}`);
  }
  t.true(broker.access.stats.refusedConnects >= 2);
  const ok = await connectAsync(broker.url, opts('cam1', PW.cam1));
  t.true(ok.connected);
  await ok.endAsync();
});

test("a device may not take over another device's session (client id): CONNACK 2", async (t) => {
  const err = await t.throwsAsync(
    connectAsync(broker.url, opts('cam2', PW.cam2, deviceClientId('f', 'cam1'))),
  );
  t.regex(err?.message ?? '', /Identifier rejected/i);
});

test("a device publishes only its own topics and cannot read another's results", async (t) => {
  const ops = await connectAsync(broker.url, opts('ops', PW.ops));
  const seen: string[] = [];
  ops.on('message', (topic) => seen.push(topic));
  await ops.subscribeAsync('splitfleet/#', { qos: 1 });

  const cam1 = await connectAsync(broker.url, opts('cam1', PW.cam1));
  // its own features and status go through
  await cam1.publishAsync(deviceTopic('f', 'cam1', 'features'), Buffer.from('x'), { qos: 1 });
  // reading its own results and bundle chunks is granted, another device's is refused
  // (SUBACK 0x80)
  t.deepEqual(
    await granted(cam1, [
      deviceTopic('f', 'cam1', 'result'),
      deviceTopic('f', 'cam1', 'chunk'),
      deviceTopic('f', 'cam2', 'result'),
      deviceTopic('f', 'cam2', 'chunk'),
      'splitfleet/f/#',
    ]),
    [1, 1, 128, 128, 128],
  );
  // publishing as cam2 closes the connection and is not delivered
  const closed = closedWithin(cam1, 20_000);
  cam1.publish(deviceTopic('f', 'cam2', 'features'), Buffer.from('forged'), { qos: 1 });
  t.true(await closed);
  await new Promise((r) => setTimeout(r, 200));
  t.deepEqual(seen, [deviceTopic('f', 'cam1', 'features')]);
  t.true(broker.access.stats.refusedPublishes >= 1 && broker.access.stats.refusedSubscribes >= 2);
  cam1.end(true);
  await ops.endAsync();
});

test('a dashboard reads its fleet and publishes nothing', async (t) => {
  const dash = await connectAsync(broker.url, opts('dash', PW.dash));
  t.deepEqual(await granted(dash, ['splitfleet/f/#', 'splitfleet/other/#']), [1, 128]);
  const closed = closedWithin(dash, 20_000);
  dash.publish(deviceTopic('f', 'cam1', 'config'), '{}', { qos: 1 });
  t.true(await closed);
  dash.end(true);
});

test('an oversized payload is refused', async (t) => {
  const cam2 = await connectAsync(broker.url, opts('cam2', PW.cam2));
  const before = broker.access.stats.oversized;
  const closed = closedWithin(cam2, 20_000);
  cam2.publish(deviceTopic('f', 'cam2', 'features'), Buffer.alloc(2048), { qos: 1 });
  t.true(await closed);
  t.is(broker.access.stats.oversized, before + 1);
  cam2.end(true);
});

test('a client over its message rate is refused after its burst', async (t) => {
  const open = await startBroker({ port: 0, wsPort: null, access: { ratePerSecond: 5, burst: 5 } });
  try {
    const c = await connectAsync(open.url, { reconnectPeriod: 0 });
    const closed = closedWithin(c, 20_000);
    for (let i = 0; i < 20; i++) c.publish('splitfleet/f/device/x/features', 'x', { qos: 0 });
    t.true(await closed);
    t.is(open.access.stats.rateLimited, 1);
    c.end(true);
  } finally {
    await open.close();
  }
});

test('TLS listener: a client that trusts the certificate connects and logs in; one that does not is refused', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sf-tls-'));
  try {
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    const r = spawnSync('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ]);
    t.is(r.status, 0, r.stderr?.toString());
    const pem = await readFile(cert);
    const tlsBroker = await startBroker({
      port: 0,
      wsPort: null,
      tls: { port: 0, key: await readFile(key), cert: pem },
      access: { credentials: await store() },
    });
    try {
      t.regex(tlsBroker.tlsUrl ?? '', /^mqtts:\/\/127\.0\.0\.1:\d+$/);
      const c = await connectAsync(tlsBroker.tlsUrl!, { ...opts('cam1', PW.cam1), ca: pem });
      t.true(c.connected);
      await c.publishAsync(deviceTopic('f', 'cam1', 'features'), 'x', { qos: 1 });
      await c.endAsync();
      await t.throwsAsync(connectAsync(tlsBroker.tlsUrl!, opts('cam1', PW.cam1)), {
        message: /self.signed|certificate/i,
      });
      await t.throwsAsync(connectAsync(tlsBroker.tlsUrl!, { ...opts('cam1', 'wrong'), ca: pem }), {
        message: /Bad username or password/i,
      });
    } finally {
      await tlsBroker.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a packet declaring more than the limit is refused before its payload is read', async (t) => {
  const before = broker.access.stats.oversized;
  const sock = await new Promise<Socket>((resolve, reject) => {
    const s = createConnection(Number(new URL(broker.url).port), '127.0.0.1', () => resolve(s));
    s.on('error', reject);
  });
  const closed = new Promise<void>((r) => sock.on('close', () => r()));
  // a PUBLISH fixed header declaring 100 MB (0x80 0x80 0x80 0x30 = 100,663,296 B) and no payload
  sock.write(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x30]));
  await closed;
  t.is(broker.access.stats.oversized, before + 1);
});
