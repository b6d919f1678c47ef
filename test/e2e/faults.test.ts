/**
 * Faults, over real sockets, processes and a real Redis, each bounded in time: the edge
 * restarts with its state in Redis; Redis restarts under a two-node cluster; an agent
 * restarts with frames queued and in flight, on another node; a device's link goes dead
 * for 30 s. Afterwards every frame id has exactly one result or one explicit error: the
 * device's own count, and a dashboard's, where QoS 1 redeliveries are collapsed by frame
 * id (and counted).
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import type { MqttClient } from 'mqtt';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Edge } from '../../edge-broker/edge.js';
import { AnswerLog, clusterAgent, clusterNode, FLEET } from '../helpers/cluster.js';
import { testEdge } from '../helpers/edge.js';
import { freePort, TcpRelay } from '../helpers/net.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { bounded, waitFor } from '../helpers/wait.js';

/** `frames` frames of the sample (looped): the run ends once every one is answered. */
const frames = (limit: number) => ({ source: 'sample', loop: true, limit }) as const;

let redis: RedisServer;
test.before(async () => {
  redis = await startRedis({ appendonly: true });
});
test.after.always(() => bounded('redis', () => redis?.stop() ?? Promise.resolve()));

test.serial('the edge restarts with its state in Redis while an agent sends', async (t) => {
  const port = await freePort();
  const node = (): Promise<Edge> =>
    testEdge({ port, edgeId: 'edge-r', fleet: FLEET, redis: { url: redis.url, mode: 'persist' } });
  let edge = await node();
  // a dashboard with a persistent session: what is published while it is away waits for it
  const log = await AnswerLog.on(edge.url, FLEET, { clientId: 'dash-r', clean: false });
  const d = await clusterAgent('cam-r', edge.url, { source: frames(100), fps: 20 });
  try {
    await d.agent.start();
    const run = d.agent.run();
    await waitFor(() => d.agent.stats.results >= 10);
    await edge.close();
    await new Promise((r) => setTimeout(r, 1000));
    edge = await node();
    const s = await run;
    t.true(s.reconnects >= 1);
    t.is(s.lost, 0);
    t.is(s.sent, s.results + s.errors, 'every frame answered, on the device');
    await waitFor(() => log.ids('cam-r').size >= d.answered.size);
    t.deepEqual(log.ids('cam-r'), new Set(d.answered.keys()), 'and on the dashboard');
    t.log(`${s.sent} frames; answers seen twice by the dashboard (collapsed): ${log.duplicates()}`);
  } finally {
    await d.agent.stop(true);
    await log.close();
    await edge.close();
  }
});

test.serial('Redis restarts under a two-node cluster', async (t) => {
  const a = await clusterNode(redis, 'node-a');
  const b = await clusterNode(redis, 'node-b');
  const log = await AnswerLog.on(b.url, FLEET);
  const d1 = await clusterAgent('cam-1', a.url, { source: frames(60), fps: 10 });
  const d2 = await clusterAgent('cam-2', b.url, { source: frames(60), fps: 10 });
  try {
    await d1.agent.start();
    await d2.agent.start();
    const runs = [d1.agent.run(), d2.agent.run()] as const;
    await waitFor(() => d1.agent.stats.results >= 10 && d2.agent.stats.results >= 10);
    await redis.restart({ kill: true, downMs: 2000 }); // a crash; its append log stays
    const [s1, s2] = await Promise.all(runs);
    for (const [s, d, dev] of [
      [s1, d1, 'cam-1'],
      [s2, d2, 'cam-2'],
    ] as const) {
      t.is(s.lost, 0, dev);
      t.is(s.sent, s.results + s.errors, `${dev}: every frame answered`);
      await waitFor(() => log.ids(dev).size >= d.answered.size, 10_000).catch(() => undefined);
      const missing = [...d.answered.keys()].filter((id) => !log.ids(dev).has(id));
      t.deepEqual(missing, [], `${dev}: the dashboard on node b saw every answer`);
    }
    t.log(`answers seen twice by the dashboard (collapsed): ${log.duplicates()}`);
  } finally {
    await d1.agent.stop(true);
    await d2.agent.stop(true);
    await log.close();
    await Promise.all([a.close(), b.close()]);
  }
});

test.serial(
  'results given on node a during Redis restarts all reach a subscriber on node b',
  async (t) => {
    const a = await clusterNode(redis, 'node-a');
    const b = await clusterNode(redis, 'node-b');
    const log = await AnswerLog.on(b.url, FLEET);
    // both devices on node a, sending fast: results are in flight whenever Redis dies
    const devices = ['cam-x', 'cam-y'];
    const ds = await Promise.all(
      devices.map((id) =>
        clusterAgent(id, a.url, { source: frames(1000), fps: 40, resultTimeoutMs: 10_000 }),
      ),
    );
    try {
      for (const d of ds) await d.agent.start();
      const runs = ds.map((d) => d.agent.run());
      const total = () => ds.reduce((n, d) => n + d.agent.stats.results, 0);
      for (let i = 0; i < 3; i++) {
        const before = total();
        await waitFor(() => total() >= before + 40, 30_000);
        await redis.restart({ kill: true, downMs: 500 }); // a crash; its append log stays
      }
      const before = total();
      await waitFor(() => total() >= before + 40, 30_000);
      for (const d of ds) await d.agent.stop();
      const stats = await Promise.all(runs);
      // what node a published (each frame decoded once, answered once) against what the
      // subscriber on node b saw, duplicates collapsed
      const published = a.stats().results + a.stats().errors;
      const seen = () => devices.reduce((n, id) => n + log.ids(id).size, 0);
      await waitFor(() => seen() >= published, 15_000).catch(() => undefined);
      const lostToDevices = stats.reduce((n, s) => n + s.lost, 0);
      t.log(
        `node a published ${published} answers over 3 Redis crashes; the subscriber on ` +
          `node b missed ${published - seen()}; the devices lost ${lostToDevices}; ` +
          `answers seen twice (collapsed): ${log.duplicates()}`,
      );
      t.is(published - seen(), 0, 'the subscriber on node b saw every answer of node a');
      t.is(lostToDevices, 0, 'and every device got its answers');
    } finally {
      for (const d of ds) await d.agent.stop(true);
      await log.close();
      await Promise.all([a.close(), b.close()]);
    }
  },
);

test.serial(
  'an agent restarts with frames queued and in flight, on another node, each answered once',
  async (t) => {
    const a = await clusterNode(redis, 'node-a');
    const b = await clusterNode(redis, 'node-b');
    const dir = await mkdtemp(join(tmpdir(), 'sf-faults-'));
    const log = await AnswerLog.on(b.url, FLEET);
    // its link to node a goes dead mid-stream: frames queue in its outbox
    const relay = await TcpRelay.start(a.url);
    const outbox = { dir, maxFrames: 1000 };
    try {
      const first = await clusterAgent('cam-q', relay.url, {
        source: frames(1000),
        fps: 20,
        outbox,
      });
      await first.agent.start();
      const running = first.agent.run();
      await waitFor(() => first.agent.stats.results >= 10);
      relay.cut();
      await new Promise((r) => setTimeout(r, 1000)); // its in-flight window fills
      // the process dies with frames unanswered: its socket goes at once, no goodbye
      (first.agent as unknown as { session: { client: MqttClient } }).session.client.end(true);
      await first.agent.stop(true);
      await running;
      const f = first.agent.stats;
      const unanswered = f.sent - f.results - f.errors;
      t.true(unanswered >= 1);
      // the device comes back on node b with the same outbox
      const second = await clusterAgent('cam-q', b.url, {
        source: { source: 'sample', limit: 5 },
        outbox,
      });
      await second.agent.start();
      t.is(second.agent.stats.restored, unanswered);
      const s = await second.agent.run();
      t.is(s.lost + s.dropped, 0);
      t.is(s.results + s.errors, unanswered + 5);
      const answered = new Set([...first.answered.keys(), ...second.answered.keys()]);
      t.is(answered.size, first.answered.size + second.answered.size, 'no frame answered twice');
      await waitFor(() => log.ids('cam-q').size >= answered.size);
      t.deepEqual(log.ids('cam-q'), answered);
      t.log(
        `${unanswered} frames restored; node b decoded ${b.stats().results}, ` +
          `answered ${b.stats().duplicates} re-sends from what node a had decoded; ` +
          `answers seen twice by the dashboard (collapsed): ${log.duplicates()}`,
      );
      await second.agent.stop();
    } finally {
      await relay.close();
      await log.close();
      await Promise.all([a.close(), b.close()]);
      await rm(dir, { recursive: true, force: true });
    }
  },
);

test.serial('a device link goes dead for 30 s, then comes back', async (t) => {
  t.timeout(170_000);
  const edge = await testEdge({ edgeId: 'edge-l', fleet: FLEET });
  const relay = await TcpRelay.start(edge.url);
  const dir = await mkdtemp(join(tmpdir(), 'sf-faults-'));
  const log = await AnswerLog.on(edge.url, FLEET);
  const d = await clusterAgent('cam-l', relay.url, {
    source: frames(150),
    fps: 10,
    outbox: { dir, maxFrames: 1000 },
    // a frame sent just before the cut waits 30 s for its answer, and is not lost
    resultTimeoutMs: 90_000,
  });
  try {
    await d.agent.start();
    const run = d.agent.run();
    await waitFor(() => d.agent.stats.results >= 10);
    relay.cut();
    await new Promise((r) => setTimeout(r, 30_000));
    relay.heal();
    const s = await run;
    t.is(s.lost + s.dropped, 0);
    t.is(s.sent, s.results + s.errors, 'every frame answered');
    await waitFor(() => log.ids('cam-l').size >= d.answered.size);
    t.deepEqual(log.ids('cam-l'), new Set(d.answered.keys()));
    t.log(
      `${s.sent} frames, ${s.reconnects} reconnects, ${relay.accepted} TCP connections; ` +
        `answers seen twice by the dashboard (collapsed): ${log.duplicates()}`,
    );
  } finally {
    await d.agent.stop(true);
    await log.close();
    await relay.close();
    await edge.close();
    await rm(dir, { recursive: true, force: true });
  }
});
