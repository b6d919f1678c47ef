/**
 * Per-client quotas: retained messages only on the topics the protocol retains, within a
 * size cap and a budget per login; a default message rate when credentials are on; at
 * most 64 filters per SUBSCRIBE (checked on the raw bytes, before the broker reads the
 * packet) and 256 subscriptions per client; refusals logged once per client per minute.
 */
import test from 'ava';
import { capturedLog, credentialsFor, deviceConnect } from '../helpers/credentials.js';
import { connect as tcp, type Socket } from 'node:net';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { startBroker, type EdgeBroker } from '../../edge-broker/broker.js';
import { deviceClientId, deviceTopic } from '../../core/wire/topics.js';
import { waitFor } from '../helpers/wait.js';

const PW = 'pw-secret';
let broker: EdgeBroker;
let logLines: string[] = [];
const clients: MqttClient[] = [];

test.before(async () => {
  const credentials = await credentialsFor(
    { cam1: 'device', cam2: 'device', cam3: 'device', ops: 'operator' },
    PW,
  );
  // every refusal line the broker writes is counted here
  const captured = capturedLog();
  logLines = captured.lines;
  broker = await startBroker({
    port: 0,
    wsPort: null,
    access: {
      credentials,
      retainedBytesPerLogin: 200_000,
      log: captured.log,
    },
  });
});
test.after.always(async () => {
  for (const c of clients) c.end(true);
  await broker?.close();
});

const login = (user: string): IClientOptions => ({
  username: user,
  password: PW,
  clientId: user.startsWith('cam') ? deviceClientId('f', user) : `${user}:t-${Math.random()}`,
  reconnectPeriod: 0,
  connectTimeout: 30_000, // a login runs scrypt: slow on a loaded machine, never a verdict
});
async function client(user: string): Promise<MqttClient> {
  const c = await connectAsync(broker.url, login(user));
  clients.push(c);
  return c;
}
function closedWithin(c: MqttClient, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (!c.connected) return resolve(true);
    const t = setTimeout(() => resolve(false), ms);
    c.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}
/** The retained message a new subscriber gets on `topic` (within 500 ms), if any. */
async function retained(topic: string): Promise<Buffer | undefined> {
  const c = await client('ops');
  let got: Buffer | undefined;
  c.on('message', (t, p, packet) => {
    if (t === topic && packet.retain) got = p;
  });
  await c.subscribeAsync(topic, { qos: 1 });
  await new Promise((r) => setTimeout(r, 500));
  c.end(true);
  return got;
}

test.serial('a retained PUBLISH off the retained topics is refused and not kept', async (t) => {
  const response = `${deviceTopic('f', 'cam1', 'status').replace(/status$/, 'response/x')}`;
  const cam1 = await client('cam1');
  const closed = closedWithin(cam1, 20_000);
  cam1.publish(response, Buffer.alloc(100_000, 1), { qos: 1, retain: true });
  t.true(await closed, 'connection closed');
  t.is(await retained(response), undefined);
  // an operator may not retain a device request either
  const ops = await client('ops');
  const request = response.replace('/response/', '/request/');
  const opsClosed = closedWithin(ops, 20_000);
  ops.publish(request, '{"id":"r"}', { qos: 1, retain: true });
  t.true(await opsClosed);
  t.is(await retained(request), undefined);
});

test.serial('retained status: within 64 KiB, and within a budget per login', async (t) => {
  const status = deviceTopic('f', 'cam2', 'status');
  const cam2 = await client('cam2');
  await cam2.publishAsync(status, '{"state":"online"}', { qos: 1, retain: true });
  t.is((await retained(status))?.toString(), '{"state":"online"}');
  const closed = closedWithin(cam2, 20_000);
  cam2.publish(status, Buffer.alloc(65 * 1024, 1), { qos: 1, retain: true });
  t.true(await closed, 'over 64 KiB');
  t.is((await retained(status))?.toString(), '{"state":"online"}');
  // an operator retaining configs: 60 KiB each, 200 kB in all for this login
  const ops = await client('ops');
  for (const d of ['d1', 'd2', 'd3']) {
    await ops.publishAsync(deviceTopic('f', d, 'config'), Buffer.alloc(60_000, 1), {
      qos: 1,
      retain: true,
    });
  }
  const opsClosed = closedWithin(ops, 20_000);
  ops.publish(deviceTopic('f', 'd4', 'config'), Buffer.alloc(60_000, 1), { qos: 1, retain: true });
  t.true(await opsClosed, 'over the budget');
  t.is(await retained(deviceTopic('f', 'd4', 'config')), undefined);
});

test.serial('with credentials, a default message rate applies', async (t) => {
  const cam3 = await client('cam3');
  const before = broker.access.stats.rateLimited;
  const closed = closedWithin(cam3, 20_000);
  for (let i = 0; i < 2000 && cam3.connected; i++) {
    cam3.publish(deviceTopic('f', 'cam3', 'features'), 'x', { qos: 0 });
  }
  t.true(await closed);
  t.true(broker.access.stats.rateLimited > before);
});

/** A raw connection logged in as `user`, for packets mqtt.js would not send. */
async function raw(user: string): Promise<{ sock: Socket; closed: Promise<void> }> {
  const sock = tcp(Number(new URL(broker.url).port), '127.0.0.1');
  const closed = new Promise<void>((r) => sock.on('close', () => r()));
  sock.on('error', () => undefined);
  const connack = new Promise<Buffer>((r) => sock.once('data', r));
  sock.write(deviceConnect(user, PW));
  const ack = await connack;
  if (ack[3] !== 0) throw new Error(`CONNACK ${ack[3]}`);
  return { sock, closed };
}

test.serial('one SUBSCRIBE with 100,000 filters is cut at once, with one log line', async (t) => {
  const before = { ...broker.access.stats };
  logLines.length = 0;
  const { sock, closed } = await raw('cam1');
  const subscriptions = Array.from({ length: 100_000 }, (_, i) => ({
    topic: `x/${i}`,
    qos: 0 as const,
  }));
  const t0 = Date.now();
  sock.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions }));
  await closed;
  t.log(`closed after ${Date.now() - t0} ms`);
  t.true(broker.access.stats.refusedSubscribes - before.refusedSubscribes < 100);
  t.true(broker.access.stats.violations > before.violations);
  t.true(logLines.length <= 2, `${logLines.length} log lines`);
});

test.serial('refused filters are logged once per client per minute, not per filter', async (t) => {
  logLines.length = 0;
  const { sock } = await raw('cam2');
  for (let k = 0; k < 10; k++) {
    const subscriptions = Array.from({ length: 64 }, (_, i) => ({
      topic: `splitfleet/f/device/other${k}-${i}/result`,
      qos: 0 as const,
    }));
    sock.write(mqttPacket.generate({ cmd: 'subscribe', messageId: k + 1, subscriptions }));
  }
  await waitFor(() => broker.access.stats.refusedSubscribes >= 640);
  t.true(logLines.length <= 1, `${logLines.length} log lines`);
  sock.destroy();
});

test.serial('at most 256 subscriptions per client', async (t) => {
  const ops = await client('ops');
  const granted: number[] = [];
  for (let k = 0; k < 5; k++) {
    const topics = Array.from({ length: 60 }, (_, i) => `splitfleet/f/device/d${k}-${i}/result`);
    try {
      granted.push(...(await ops.subscribeAsync(topics, { qos: 1 })).map((g) => g.qos));
    } catch (e) {
      const packet = (e as { packet?: { granted?: number[] } }).packet;
      if (!packet?.granted) throw e;
      granted.push(...packet.granted);
    }
  }
  t.is(granted.filter((q) => q === 1).length, 256);
  t.is(granted.filter((q) => q === 128).length, 300 - 256);
  // unsubscribing frees places
  await ops.unsubscribeAsync([
    'splitfleet/f/device/d0-0/result',
    'splitfleet/f/device/d0-1/result',
  ]);
  const again = await ops.subscribeAsync('splitfleet/f/device/e/result', { qos: 1 });
  t.is(again[0]?.qos, 1);
});
