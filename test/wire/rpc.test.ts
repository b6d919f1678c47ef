/**
 * The one request/response mechanism (core/wire/rpc.ts) over a real broker: an answer
 * per request matched by its correlation id, errors answered where the caller waits,
 * retained requests ignored, no answer -> a timeout.
 */
import test from 'ava';
import { connectAsync, type MqttClient } from 'mqtt';
import { startBroker, type EdgeBroker } from '../../edge-broker/broker.js';
import { dataOf, OpError, request, serveOps } from '../../core/wire/rpc.js';
import { waitFor } from '../helpers/wait.js';

let broker: EdgeBroker;
let server: MqttClient;
let caller: MqttClient;
const warned: string[] = [];
const PREFIX = 'splitfleet/f/device/cam';

test.before(async () => {
  broker = await startBroker({ port: 0, wsPort: null });
  server = await connectAsync(broker.url, { reconnectPeriod: 0 });
  caller = await connectAsync(broker.url, { reconnectPeriod: 0 });
  const handle = serveOps({
    base: 'splitfleet',
    ops: {
      echo: (body) => Promise.resolve({ got: body.x ?? null }),
      fail: () => Promise.reject(new OpError('refused on purpose', { why: 'test' })),
      crash: () => Promise.reject(new Error('boom')),
    },
    publish: (topic, payload) =>
      server.publishAsync(topic, payload, { qos: 1 }).then(() => undefined),
    warn: (what) => warned.push(what),
  });
  server.on('message', (topic, payload, packet) => handle(topic, payload, packet.retain));
  await server.subscribeAsync(`${PREFIX}/request/+`, { qos: 1 });
});
test.after.always(async () => {
  await caller?.endAsync();
  await server?.endAsync();
  await broker?.close();
});

test('a request gets its own answer, matched by id', async (t) => {
  const [a, b] = await Promise.all([
    request(caller, `${PREFIX}/request/echo`, { x: 1 }),
    request(caller, `${PREFIX}/request/echo`, { x: 2 }),
  ]);
  t.deepEqual(dataOf(a), { got: 1 });
  t.deepEqual(dataOf(b), { got: 2 });
  t.not(a.id, b.id);
});

test('errors are answered: OpError with its data, a crash logged, an unknown op named', async (t) => {
  const f = await request(caller, `${PREFIX}/request/fail`);
  t.is(f.status, 'error');
  t.is(f.error, 'refused on purpose');
  t.deepEqual(f.data, { why: 'test' });
  const c = await request(caller, `${PREFIX}/request/crash`);
  t.is(c.error, 'boom');
  t.true(warned.includes('op failed'));
  const u = await request(caller, `${PREFIX}/request/Nope`);
  t.regex(u.error ?? '', /unknown op "Nope"; ops: echo, fail, crash/);
  t.throws(() => dataOf(u), { message: /unknown op/ });
});

test('a retained request is ignored; a request nobody serves times out', async (t) => {
  await caller.publishAsync(`${PREFIX}/request/echo`, '{"id":"r"}', { qos: 1, retain: true });
  const late = await connectAsync(broker.url, { reconnectPeriod: 0 });
  const handle = serveOps({
    base: 'splitfleet',
    ops: { echo: () => Promise.resolve('late') },
    publish: () => Promise.resolve(),
    warn: (what) => warned.push(`late: ${what}`),
  });
  late.on('message', (topic, payload, packet) => handle(topic, payload, packet.retain));
  await late.subscribeAsync(`${PREFIX}/request/+`, { qos: 1 });
  await waitFor(() => warned.includes('late: retained request ignored'), 10_000);
  await caller.publishAsync(`${PREFIX}/request/echo`, '', { qos: 1, retain: true });
  await late.endAsync();
  await t.throwsAsync(request(caller, 'splitfleet/f/device/nobody/request/echo', {}, 300), {
    message: /no answer/,
  });
});
