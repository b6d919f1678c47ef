/**
 * One node of a cluster runs the rollouts: the holder of a lock in a real Redis. The lock
 * passes on when its holder releases it or dies (its expiry); edge nodes with a fleet file
 * on one Redis: the leader runs a job, the other refuses jobs and shows the leader's, and
 * takes over (resuming the jobs, rolling back the one cut short) when the leader stops.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveBundle } from '../../core/model/bundle.js';
import type { Edge } from '../../edge-broker/edge.js';
import {
  LEADER_TTL_MS,
  LEADER_TTL_RANGE,
  leaderLock,
  leaderTtl,
} from '../../edge-broker/fleet/leader.js';
import { RolloutError, type RolloutJob } from '../../edge-broker/fleet/rollout.js';
import { parseFleet } from '../../fleet-config/load.js';
import { bundleVersion } from '../helpers/bundles.js';
import { clusterAgent, clusterNode, FLEET } from '../helpers/cluster.js';
import { shippedModel } from '../helpers/model.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { bounded, waitFor } from '../helpers/wait.js';

const TTL = 600;

let redis: RedisServer;
test.before(async () => {
  redis = await startRedis();
});
test.after.always(() => bounded('redis', () => redis?.stop() ?? Promise.resolve()));

test("the lock's ttl is the default or a checked integer in its range", async (t) => {
  t.is(leaderTtl(undefined), LEADER_TTL_MS);
  t.is(leaderTtl(LEADER_TTL_RANGE.min), LEADER_TTL_RANGE.min);
  for (const bad of [0, -1, 299.5, LEADER_TTL_RANGE.min - 1, LEADER_TTL_RANGE.max + 1, NaN])
    t.throws(() => leaderTtl(bad), { instanceOf: RangeError }, String(bad));
  // refused before any connection is made
  await t.throwsAsync(leaderLock({ url: redis.url, key: 'k', name: 'x', ttlMs: 10 }), {
    instanceOf: RangeError,
  });
});

test.serial('one holder of the lock at a time; a release passes it on at once', async (t) => {
  const key = 'test:lock:release';
  const a = await leaderLock({ url: redis.url, key, name: 'a', ttlMs: TTL });
  const b = await leaderLock({ url: redis.url, key, name: 'b', ttlMs: TTL });
  try {
    t.true(a.leader);
    t.false(b.leader);
    // renewals keep it with a for several ttls
    await new Promise((r) => setTimeout(r, 3 * TTL));
    t.true(a.leader);
    t.false(b.leader);
    const released = Date.now();
    await a.stop();
    await waitFor(() => b.leader, TTL);
    t.log(`passed on ${Date.now() - released} ms after the release (ttl ${TTL} ms)`);
  } finally {
    await a.stop();
    await b.stop();
  }
});

test.serial('a holder that dies (SIGKILL) loses the lock within its ttl', async (t) => {
  const key = 'test:lock:kill';
  const leader = fileURLToPath(new URL('../../edge-broker/fleet/leader.ts', import.meta.url));
  const script =
    `const { leaderLock } = await import(${JSON.stringify(leader)});` +
    `const l = await leaderLock({ url: ${JSON.stringify(redis.url)}, key: '${key}', ` +
    `name: 'child', ttlMs: ${TTL} });` +
    `process.stdout.write(l.leader ? 'leader\\n' : 'follower\\n'); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--import=tsx', '--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const b = await (async () => {
    await waitFor(() => out.includes('\n'), 30_000);
    return leaderLock({ url: redis.url, key, name: 'b', ttlMs: TTL });
  })().catch((e: unknown) => {
    child.kill('SIGKILL');
    throw e;
  });
  try {
    t.is(out, 'leader\n');
    t.false(b.leader);
    const killed = Date.now();
    child.kill('SIGKILL');
    await exited;
    // the lock expires within a ttl; b tries every ttl/3
    await waitFor(() => b.leader, TTL + TTL / 3 + 200);
    t.log(`taken over ${Date.now() - killed} ms after the kill (ttl ${TTL} ms)`);
  } finally {
    child.kill('SIGKILL');
    await b.stop();
  }
});

const FLEET_FILE = `
version: 1
fleet: ${FLEET}
defaults: { codec: split-q, point: 2, fps: 20 }
devices:
  cam-1: {}
`;
const TERMINAL = ['SUCCEEDED', 'FAILED', 'ROLLED_BACK'];
const job = (e: Edge, id: string): RolloutJob | undefined =>
  e.rollouts.list().find((j) => j.jobId === id);

test.serial(
  'two nodes with a fleet file: only the leader runs rollouts; when it stops the other takes over',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'sf-leader-'));
    const v2 = await shippedModel();
    const v3 = await bundleVersion(v2, join(dir, 'registry'), 3);
    const v4 = await bundleVersion(v2, join(dir, 'registry'), 4);
    const node = (id: string) =>
      clusterNode(redis, id, {
        bundles: [v2],
        staged: [v3, v4],
        fleetFile: parseFleet(FLEET_FILE),
        stateDir: join(dir, id),
      });
    for (const id of ['node-a', 'node-b']) await mkdir(join(dir, id));
    const a = await node('node-a');
    const b = await node('node-b');
    let aClosed = false;
    const d = await clusterAgent('cam-1', `${a.url},${b.url}`, {
      source: { source: 'sample', loop: true, limit: 100_000 },
      fps: 20,
      resultTimeoutMs: 20_000,
      resolveBundle: (m, c) => resolveBundle(m, { codec: c }),
      bundles: { dir: join(dir, 'cam-1') },
    });
    try {
      t.true(a.rollouts.leader, 'the first node took the lock');
      t.false(b.rollouts.leader);
      t.throws(() => b.rollouts.create({ model: 'resnet9w05-cifar10@3' }), {
        instanceOf: RolloutError,
      });
      // the configs are the leader's to publish: a follower refuses an operator's change
      await t.throwsAsync(b.setConfig({ target: { device: 'cam-1' }, set: { fps: 5 } }), {
        message: /not the leader/,
      });
      await d.agent.start();
      const run = d.agent.run();
      await waitFor(() => d.agent.stats.results >= 10, 60_000);
      // (the health gates are rollout.test.ts' matter: here a stray error fails no wave)
      const spec = { minFrames: 10, gates: { maxErrorRate: 0.5 } };
      const first = a.rollouts.create({ model: 'resnet9w05-cifar10@3', ...spec });
      await waitFor(() => TERMINAL.includes(job(a, first.jobId)!.state), 120_000);
      t.is(job(a, first.jobId)!.state, 'SUCCEEDED', job(a, first.jobId)!.reason ?? '');
      t.is(d.agent.settings.bundle.manifest.version, 3);
      // the other node shows the leader's jobs (read at its tries of the lock), runs none
      // (bounds are generous: a loaded machine delays the lock's tries; how long the takeover
      // took is logged, not asserted)
      await waitFor(() => job(b, first.jobId)?.state === 'SUCCEEDED', 3 * LEADER_TTL_MS);
      // a second job is cut short: its leader stops during it
      const second = a.rollouts.create({ model: 'resnet9w05-cifar10@4', soakMs: 60_000 });
      await waitFor(() => job(a, second.jobId)!.state === 'IN_PROGRESS');
      const stopped = Date.now();
      await a.close();
      aClosed = true;
      await waitFor(() => b.rollouts.leader, 3 * LEADER_TTL_MS);
      t.log(`node b took over ${Date.now() - stopped} ms after node a stopped`);
      await waitFor(() => job(b, second.jobId)?.state === 'ROLLED_BACK', 60_000);
      t.is(job(b, first.jobId)!.state, 'SUCCEEDED', 'the finished job and its pin stay');
      // the device settles on the config node b wants (it may still be fetching the second
      // job's bundle when the takeover republishes)
      const settled = () => {
        const c = b.configs().get('cam-1');
        return !!c && c.applied === c.wanted && d.agent.settings.bundle.manifest.version === 3;
      };
      await waitFor(settled, 60_000);
      // and node b runs the next rollout
      const third = b.rollouts.create({ model: 'resnet9w05-cifar10@4', ...spec });
      await waitFor(() => TERMINAL.includes(job(b, third.jobId)!.state), 120_000);
      t.is(job(b, third.jobId)!.state, 'SUCCEEDED', job(b, third.jobId)!.reason ?? '');
      t.is(d.agent.settings.bundle.manifest.version, 4);
      await d.agent.stop();
      await run;
    } finally {
      await d.agent.stop(true);
      if (!aClosed) await a.close();
      await b.close();
      await rm(dir, { recursive: true, force: true });
    }
  },
);
