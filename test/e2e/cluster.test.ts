/**
 * Past one node, over real sockets and a real Redis (redis-server, started here): edge
 * nodes joined by mqemitter-redis and aedes-persistence-redis. A device may connect to
 * any node, a result reaches subscribers on any node, each frame is decoded once (by its
 * device's node), and when a node leaves its devices reconnect to another and go on.
 */
import test from 'ava';
import { AnswerLog, clusterAgent, clusterNode, FLEET } from '../helpers/cluster.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { bounded, waitFor } from '../helpers/wait.js';

let redis: RedisServer;
test.before(async () => {
  redis = await startRedis();
});
test.after.always(() => bounded('redis', () => redis?.stop() ?? Promise.resolve()));

test.serial(
  'any node: results reach every node, each frame decoded once by its device node',
  async (t) => {
    const [a, b, c] = [
      await clusterNode(redis, 'node-a'),
      await clusterNode(redis, 'node-b'),
      await clusterNode(redis, 'node-c'),
    ];
    try {
      const log = await AnswerLog.on(c.url, FLEET); // a dashboard on a third node
      const d1 = await clusterAgent('cam-a', a.url);
      const d2 = await clusterAgent('cam-b', b.url);
      await d1.agent.start();
      await d2.agent.start();
      const [s1, s2] = await Promise.all([d1.agent.run(), d2.agent.run()]);
      for (const s of [s1, s2]) {
        t.is(s.sent, 10);
        t.is(s.results, 10);
        t.is(s.errors + s.lost, 0);
      }
      t.true([...d1.answered.values()].every((v) => v === 'result@node-a'));
      t.true([...d2.answered.values()].every((v) => v === 'result@node-b'));
      await waitFor(() => log.ids('cam-a').size === 10 && log.ids('cam-b').size === 10);
      await new Promise((r) => setTimeout(r, 300)); // anything late would show
      t.deepEqual(log.ids('cam-a'), new Set(d1.answered.keys()));
      t.deepEqual(log.ids('cam-b'), new Set(d2.answered.keys()));
      t.is(log.duplicates(), 0, 'one answer per frame id');
      // decoded exactly once across the nodes: each by its device's node
      const [sa, sb, sc] = [a.stats(), b.stats(), c.stats()];
      t.is(sa.received, 10);
      t.is(sb.received, 10);
      t.is(sc.received, 0);
      t.is(sa.results + sb.results + sc.results, 20);
      // presence travels too: node c knows the devices connected elsewhere
      await waitFor(() => c.devices().filter((d) => d.online).length === 2);
      await d1.agent.stop();
      await d2.agent.stop();
      await log.close();
    } finally {
      await Promise.all([a.close(), b.close(), c.close()]);
    }
  },
);

test.serial(
  'a node leaves: its device reconnects to the next node and keeps getting results',
  async (t) => {
    const a = await clusterNode(redis, 'node-a');
    t.teardown(() => bounded('node a', () => a.close()));
    const b = await clusterNode(redis, 'node-b');
    t.teardown(() => bounded('node b', () => b.close()));
    const log = await AnswerLog.on(b.url, FLEET);
    t.teardown(() => bounded('dashboard', () => log.close()));
    const d = await clusterAgent('cam-f', `${a.url},${b.url}`, {
      source: { source: 'sample', loop: true },
      fps: 20,
    });
    // (teardowns run last first: the agent stops before the nodes close)
    t.teardown(() => bounded('agent', () => d.agent.stop(true)));
    await d.agent.start();
    const run = d.agent.run();
    await waitFor(() => d.agent.stats.results >= 10);
    t.true([...d.answered.values()].every((v) => v === 'result@node-a'));
    await a.close(); // the node leaves
    const before = d.agent.stats.results;
    await waitFor(() => d.agent.stats.results >= before + 20, 60_000);
    // the stop lets the frames in flight get their answers
    await d.agent.stop();
    const s = await run;
    t.true(s.reconnects >= 1);
    t.is(s.lost, 0);
    t.is(s.sent, s.results + s.errors, 'every frame answered');
    t.is(d.answered.size, s.results + s.errors, 'one answer per frame id');
    t.true(
      [...d.answered.values()].some((v) => v === 'result@node-b'),
      'node b took over',
    );
    // the dashboard on node b saw every answer the device got, one per frame id
    await waitFor(() => log.ids('cam-f').size >= d.answered.size);
    t.deepEqual(log.ids('cam-f'), new Set(d.answered.keys()));
    t.log(`answers seen twice by the dashboard (collapsed): ${log.duplicates()}`);
    // frames in flight when node a left may have been decoded there and again on b
    const decoded = a.stats().results + b.stats().results;
    t.log(`decoded ${decoded} for ${s.results} results`);
    t.true(decoded - s.results <= 4, 'at most the in-flight window decoded twice');
  },
);
