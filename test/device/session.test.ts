/**
 * The agent's MQTT session over real sockets: a login the broker refuses fails start()
 * (with an outbox too, which otherwise starts offline), recognised by its CONNACK return
 * code; an agent started before its edge connects by its own reconnect schedule once the
 * edge is up (with or without an outbox), and its frames are answered; a publish left
 * unacknowledged by a lost connection fails instead of holding the session's stop.
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { Agent } from '../../device-agent/agent.js';
import { Bus } from '../../device-agent/bus.js';
import { isRefusedLogin, Session } from '../../device-agent/session.js';
import { DEFAULT_BASE } from '../../core/wire/topics.js';
import { startBroker, type EdgeBroker } from '../../edge-broker/broker.js';
import { credentialsFor } from '../helpers/credentials.js';
import { testEdge } from '../helpers/edge.js';
import { shippedModel } from '../helpers/model.js';
import { freePort } from '../helpers/net.js';
import { waitFor } from '../helpers/wait.js';

const PW = 'a-device-password';

class CodeError extends Error {
  constructor(
    message: string,
    readonly code: number | string,
  ) {
    super(message);
  }
}

test('a refused login is CONNACK return code 4 or 5, never a network error', (t) => {
  t.true(isRefusedLogin(new CodeError('Connection refused: Bad username or password', 4)));
  t.true(isRefusedLogin(new CodeError('Connection refused: Not authorized', 5)));
  t.false(isRefusedLogin(new CodeError('Connection refused: Server unavailable', 3)));
  t.false(isRefusedLogin(new CodeError('connect ECONNREFUSED 127.0.0.1:1883', 'ECONNREFUSED')));
  t.false(isRefusedLogin(new Error('Bad username or password')), 'the text alone says nothing');
});

let broker: EdgeBroker | undefined;
test.after.always(() => broker?.close());

async function agentOn(url: string, password: string, dir: string): Promise<Agent> {
  return new Agent({
    url,
    fleet: 'f',
    deviceId: 'cam1',
    bundle: await shippedModel(),
    codec: 'split-q',
    point: 2,
    source: { source: 'sample', limit: 1 },
    username: 'cam1',
    password,
    reconnectPeriodMs: 100,
    outbox: { dir },
  });
}

test.serial(
  'a refused login fails start, even with an outbox; the right one connects',
  async (t) => {
    broker = await startBroker({
      port: 0,
      wsPort: null,
      access: { credentials: await credentialsFor({ cam1: 'device' }, PW) },
    });
    const dir = await mkdtemp(join(tmpdir(), 'sf-session-'));
    try {
      const bad = await agentOn(broker.url, 'not-the-password', dir);
      const err = await t.throwsAsync(bad.start());
      t.true(err !== undefined && isRefusedLogin(err), String(err));
      await bad.stop(true);
      const good = await agentOn(broker.url, PW, dir);
      await good.start();
      await good.stop(true);
      t.pass();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
);

test.serial('an agent started before its edge connects once the edge is up', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sf-session-'));
  const port = await freePort();
  const agent = new Agent({
    url: `mqtt://127.0.0.1:${port}`,
    fleet: 'late',
    deviceId: 'cam',
    bundle: await shippedModel(),
    codec: 'split-q',
    point: 2,
    source: { source: 'sample', limit: 3 },
    fps: 0,
    reconnectPeriodMs: 100,
    maxReconnectMs: 400,
    outbox: { dir },
  });
  try {
    await agent.start(); // no edge: it starts offline
    const run = agent.run();
    const edge = await testEdge({ port });
    try {
      const s = await run;
      t.is(s.results, 3);
      t.is(s.errors + s.lost + s.dropped, 0);
      t.true(s.reconnects >= 1);
    } finally {
      await agent.stop(true);
      await edge.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.serial('without an outbox, start() waits for an edge that is not up yet', async (t) => {
  const port = await freePort();
  const agent = new Agent({
    url: `mqtt://127.0.0.1:${port}`,
    fleet: 'late',
    deviceId: 'cam-wait',
    bundle: await shippedModel(),
    codec: 'split-q',
    point: 2,
    source: { source: 'sample', limit: 3 },
    fps: 0,
    reconnectPeriodMs: 100,
    maxReconnectMs: 400,
  });
  let reconnects = 0;
  agent.on('reconnecting', () => reconnects++);
  const started = agent.start(); // nothing listens on the port: it retries
  let edge;
  try {
    // the edge comes up only after the agent has tried (and failed) at least twice
    await waitFor(() => reconnects >= 2);
    edge = await testEdge({ port });
    await started;
    const s = await agent.run();
    t.is(s.results, 3);
    t.is(s.errors + s.lost, 0);
  } finally {
    await started.catch(() => undefined);
    await agent.stop(true);
    await edge?.close();
  }
});

test.serial('without an outbox, a refused login still fails start()', async (t) => {
  broker ??= await startBroker({
    port: 0,
    wsPort: null,
    access: { credentials: await credentialsFor({ cam1: 'device' }, PW) },
  });
  const bad = new Agent({
    url: broker.url,
    fleet: 'f',
    deviceId: 'cam1',
    bundle: await shippedModel(),
    codec: 'split-q',
    point: 2,
    source: { source: 'sample', limit: 1 },
    username: 'cam1',
    password: 'not-the-password',
    reconnectPeriodMs: 100,
  });
  const err = await t.throwsAsync(bad.start());
  t.true(err !== undefined && isRefusedLogin(err), String(err));
  await bad.stop(true);
});

/**
 * A broker that acknowledges everything but the first feature frame: it closes that
 * connection instead, as an edge that goes away with a frame in flight does.
 */
async function brokerDroppingFirstFrame() {
  const seen: { conn: number; cmd: string; topic?: string }[] = [];
  const sockets = new Set<Socket>();
  let conns = 0;
  const server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    const conn = ++conns;
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const send = (p: Packet) => sock.write(mqttPacket.generate(p));
    parser.on('packet', (p) => {
      seen.push({ conn, cmd: p.cmd, ...(p.cmd === 'publish' ? { topic: p.topic } : {}) });
      if (p.cmd === 'connect') send({ cmd: 'connack', returnCode: 0, sessionPresent: false });
      else if (p.cmd === 'subscribe')
        send({ cmd: 'suback', messageId: p.messageId, granted: p.subscriptions.map(() => 1) });
      else if (p.cmd === 'pingreq') send({ cmd: 'pingresp' });
      else if (p.cmd === 'publish' && p.qos === 1) {
        const first = p.topic.endsWith('/features') && !seen.some((s) => s.cmd === 'lost');
        if (first) {
          seen.push({ conn, cmd: 'lost' });
          sock.destroy(); // no PUBACK, ever
        } else send({ cmd: 'puback', messageId: p.messageId });
      } else if (p.cmd === 'disconnect') sock.end();
    });
    sock.on('data', (d: Buffer) => parser.parse(d));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    url: `mqtt://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

test('a frame left unacknowledged by a lost connection fails; the next connection and the stop go on', async (t) => {
  const broker = await brokerDroppingFirstFrame();
  const bus = new Bus('cam');
  const online: number[] = [];
  bus.on('online', (conn) => online.push(conn));
  const session = new Session(
    {
      url: broker.url,
      fleet: 'f',
      deviceId: 'cam',
      base: DEFAULT_BASE,
      reconnectPeriodMs: 50,
      maxReconnectMs: 100,
      offlineStart: false,
      subscriptions: ['splitfleet/f/device/cam/result'],
    },
    bus,
    () => ({ model: 'm@1', codec: 'split-q', point: 0, configId: null }),
    () => undefined,
  );
  try {
    await session.start();
    let failed: Error | null = null;
    session.publishFrame(Buffer.from('frame'), (e) => (failed = e));
    // (without the fix its callback never runs, and the stop below waits forever)
    await waitFor(() => failed !== null);
    t.truthy(failed, 'the frame the connection never acknowledged failed');
    await waitFor(() => online.length === 2);
    t.deepEqual(online, [1, 2]);
    // the death and a clean DISCONNECT go on the second connection: nothing waits for
    // the first connection's acknowledgement
    await session.stop();
    t.true(broker.seen.some((p) => p.conn === 2 && p.cmd === 'disconnect'));
  } finally {
    await session.stop();
    await broker.close();
  }
});
