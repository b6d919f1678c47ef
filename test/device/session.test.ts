/**
 * The agent's MQTT session over real sockets: a login the broker refuses fails start()
 * (with an outbox too, which otherwise starts offline), recognised by its CONNACK return
 * code; an agent started before its edge connects by its own reconnect schedule once the
 * edge is up, and its frames are answered.
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../device-agent/agent.js';
import { isRefusedLogin } from '../../device-agent/session.js';
import { startBroker, type EdgeBroker } from '../../edge-broker/broker.js';
import { credentialsFor } from '../helpers/credentials.js';
import { testEdge } from '../helpers/edge.js';
import { shippedModel } from '../helpers/model.js';
import { freePort } from '../helpers/net.js';

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
