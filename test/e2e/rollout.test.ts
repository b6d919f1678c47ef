/**
 * Rollouts as jobs over real MQTT: three devices, a canary wave then the rest. A bundle
 * whose edge half fails every frame is rolled back automatically after the canary; a good
 * one reaches every device, and an operator's rollback (over the edge's request topic,
 * as `splitfleet fleet rollback` sends it) returns them to the version they ran.
 */
import test from 'ava';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { Agent } from '../../device-agent/agent.js';
import type { Edge } from '../../edge-broker/edge.js';
import {
  parseRolloutSpec,
  ROLLOUT_DEFAULTS,
  type RolloutJob,
} from '../../edge-broker/fleet/rollout.js';
import { resolveBundle } from '../../core/model/bundle.js';
import { parseFleet } from '../../fleet-config/load.js';
import type { ConfigMessage } from '../../core/wire/messages.js';
import { deviceFilter } from '../../core/wire/topics.js';
import { edgeRequest } from '../../cli/commands/fleet-jobs.js';
import { bundleVersion } from '../helpers/bundles.js';
import { testEdge } from '../helpers/edge.js';
import { shippedModel } from '../helpers/model.js';
import { waitFor } from '../helpers/wait.js';

const DEVICES = ['cam-a', 'cam-b', 'cam-c'];
const FLEET = `
version: 1
fleet: ro
defaults: { codec: split-q, point: 2, fps: 20 }
groups: { yard: {} }
devices:
  cam-a: { group: yard }
  cam-b: { group: yard }
  cam-c: {}
`;
const TERMINAL = ['SUCCEEDED', 'FAILED', 'ROLLED_BACK'];

async function fleetUp(dir: string, extra: number[], broken: number[] = []) {
  const v2 = await shippedModel();
  const staged = [];
  for (const v of extra) staged.push(await bundleVersion(v2, join(dir, 'registry'), v));
  for (const v of broken)
    staged.push(await bundleVersion(v2, join(dir, 'registry'), v, { brokenTail: true }));
  const edge = await testEdge({
    edgeId: 'edge-ro',
    fleet: 'ro',
    bundles: [v2],
    staged,
    fleetFile: parseFleet(FLEET),
    metricsPort: 0,
    stateDir: dir,
  });
  const agents = DEVICES.map(
    (d) =>
      new Agent({
        url: edge.url,
        fleet: 'ro',
        deviceId: d,
        bundle: v2,
        codec: 'split-q',
        point: 2,
        source: { source: 'sample', loop: true, limit: 100_000 },
        fps: 20,
        resultTimeoutMs: 20_000,
        resolveBundle: (m, c) => resolveBundle(m, { codec: c }),
        bundles: { dir: join(dir, d) },
      }),
  );
  for (const a of agents) await a.start();
  const runs = agents.map((a) => a.run());
  await waitFor(() => agents.every((a) => a.stats.results >= 10), 60_000);
  const stop = async () => {
    for (const a of agents) await a.stop(true);
    await Promise.all(runs);
    await edge.close();
  };
  return { edge, agents, stop };
}

async function settled(edge: Edge, jobId: string): Promise<RolloutJob> {
  await waitFor(
    () => TERMINAL.includes(edge.rollouts.list().find((j) => j.jobId === jobId)!.state),
    120_000,
  );
  return edge.rollouts.list().find((j) => j.jobId === jobId)!;
}

/** A state folder with a staged v3, and the options of an edge on it (restart tests). */
async function restartable() {
  const dir = await mkdtemp(join(tmpdir(), 'sf-ro-'));
  const v2 = await shippedModel();
  const v3 = await bundleVersion(v2, join(dir, 'registry'), 3);
  const opts = {
    edgeId: 'edge-ro',
    fleet: 'ro',
    bundles: [v2],
    staged: [v3],
    fleetFile: parseFleet(FLEET),
    stateDir: dir,
  };
  return { dir, v3, opts };
}

const versions = (agents: Agent[]) => agents.map((a) => a.settings.bundle.manifest.version);

test.serial(
  'a canary that fails its error-rate gate is rolled back automatically; the other devices never get it',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'sf-ro-'));
    const { edge, agents, stop } = await fleetUp(dir, [], [5]);
    try {
      const queued = edge.rollouts.create({
        model: 'resnet9w05-cifar10@5',
        waves: [1, '100%'],
        minFrames: 10,
        soakMs: 20_000,
        applyTimeoutMs: 30_000,
      });
      t.is(queued.state, 'QUEUED');
      t.deepEqual(queued.waves, [1, 3]);
      const job = await settled(edge, queued.jobId);
      t.is(job.state, 'ROLLED_BACK');
      t.regex(job.reason!, /wave 1: error rate 1 > 0\.05/);
      t.is(job.deployed.length, 1);
      const canary = job.deployed[0]!;
      t.is(job.health[0]!.device, canary);
      t.true(job.health[0]!.errors >= 10);
      // every device runs version 2 again; only the canary ever downloaded version 5
      await waitFor(() => [...edge.configs().values()].every((c) => c.applied === c.wanted));
      t.deepEqual(versions(agents), [2, 2, 2]);
      for (const a of agents) {
        t.is(a.updater!.stats.downloads, a.deviceId === canary ? 1 : 0, a.deviceId);
      }
      // results flow again on version 2
      const before = agents.map((a) => a.stats.results);
      await waitFor(() => agents.every((a, i) => a.stats.results >= before[i]! + 5));
      // the job's state is saved and shown in the metrics
      const saved = JSON.parse(await readFile(join(dir, 'jobs.json'), 'utf8')) as {
        jobs: RolloutJob[];
      };
      t.is(saved.jobs[0]!.state, 'ROLLED_BACK');
      const metrics = await (await fetch(`${edge.metricsUrl}/metrics`)).text();
      t.regex(metrics, /splitfleet_rollout_jobs\{state="ROLLED_BACK"[^}]*\} 1/);
    } finally {
      await stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
);

test.serial(
  'a good bundle rolls out wave by wave to every device; an operator rolls it back over MQTT',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'sf-ro-'));
    const { edge, agents, stop } = await fleetUp(dir, [3]);
    const op = await connectAsync(edge.url, { reconnectPeriod: 0 });
    try {
      const where = { fleet: 'ro', edge: 'edge-ro' };
      // a bad request gets the edge's reason
      await t.throwsAsync(
        edgeRequest(op, where, 'rollout', { spec: { model: 'resnet9w05-cifar10@9' } }),
        { message: /not in the edge's registry/ },
      );
      // a malformed spec is refused before anything is queued, naming the field
      await t.throwsAsync(
        edgeRequest(op, where, 'rollout', {
          spec: { model: 'resnet9w05-cifar10@3', minFrames: 'ten' },
        }),
        { message: /minFrames/ },
      );
      await t.throwsAsync(edgeRequest(op, where, 'rollback', { jobId: 7 }), {
        message: /jobId/,
      });
      t.deepEqual(edge.rollouts.list(), []);
      const queued = await edgeRequest<RolloutJob>(op, where, 'rollout', {
        spec: {
          model: 'resnet9w05-cifar10@3',
          groups: ['yard'],
          devices: ['cam-c'],
          waves: [1, 2, '100%'],
          minFrames: 10,
          soakMs: 20_000,
          gates: { maxLatencyMs: 5000, minConfidence: 0.2 },
        },
      });
      t.deepEqual(queued.waves, [1, 2, 3]);
      const job = await settled(edge, queued.jobId);
      t.is(job.state, 'SUCCEEDED', job.reason ?? '');
      t.is(job.wave, 2);
      t.deepEqual([...job.deployed].sort(), DEVICES);
      await waitFor(() => [...edge.configs().values()].every((c) => c.applied === c.wanted));
      t.deepEqual(versions(agents), [3, 3, 3]);
      t.true(job.health.every((h) => h.errors === 0 && h.confidence !== null));
      const listed = await edgeRequest<RolloutJob[]>(op, where, 'jobs', {});
      t.is(listed.find((j) => j.jobId === job.jobId)!.state, 'SUCCEEDED');

      const back = await edgeRequest<RolloutJob>(
        op,
        where,
        'rollback',
        { jobId: job.jobId },
        60_000,
      );
      t.is(back.state, 'ROLLED_BACK');
      await waitFor(() => [...edge.configs().values()].every((c) => c.applied === c.wanted));
      t.deepEqual(versions(agents), [2, 2, 2]);
    } finally {
      await op.endAsync();
      await stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
);

test.serial(
  'jobs survive an edge restart: one cut mid-rollout is rolled back, its pin gone',
  async (t) => {
    const { dir, opts } = await restartable();
    let edge = await testEdge(opts);
    try {
      // no device answers, so the canary wave waits for its apply when the edge stops
      const job = edge.rollouts.create({ model: 'resnet9w05-cifar10@3', devices: ['cam-a'] });
      await waitFor(() => edge.rollouts.list()[0]!.state === 'IN_PROGRESS');
      t.is(edge.rollouts.overrideFor('cam-a')?.model, 'resnet9w05-cifar10@3');
      await edge.close();
      edge = await testEdge(opts);
      const [after] = edge.rollouts.list();
      t.is(after!.jobId, job.jobId);
      t.is(after!.state, 'ROLLED_BACK');
      t.regex(after!.reason!, /restarted/);
      t.is(edge.rollouts.overrideFor('cam-a'), undefined);
    } finally {
      await edge.close();
      await rm(dir, { recursive: true, force: true });
    }
  },
);

test.serial(
  "a succeeded job's pin is in the first configs after a restart; a damaged state file is set aside",
  async (t) => {
    const { dir, v3, opts } = await restartable();
    const job = {
      jobId: 'job-kept',
      state: 'SUCCEEDED',
      spec: { model: 'resnet9w05-cifar10@3', devices: ['cam-a'] },
      deployed: ['cam-a'],
    };
    await writeFile(join(dir, 'jobs.json'), JSON.stringify({ jobs: [job] }));
    let edge = await testEdge(opts);
    const sub = await connectAsync(edge.url, { reconnectPeriod: 0 });
    try {
      const configs = new Map<string, ConfigMessage>();
      sub.on('message', (topic, p) =>
        configs.set(topic.split('/')[3]!, JSON.parse(p.toString()) as ConfigMessage),
      );
      await sub.subscribeAsync(deviceFilter('config', 'ro'), { qos: 1 });
      await waitFor(() => configs.size === 3);
      t.is(configs.get('cam-a')!.settings.model, 'resnet9w05-cifar10@3');
      t.is(configs.get('cam-a')!.bundle!.manifestSha256, v3.manifestSha256);
      t.is(configs.get('cam-b')!.settings.model, 'resnet9w05-cifar10');
      await sub.endAsync();
      await edge.close();
      await writeFile(join(dir, 'jobs.json'), '{"jobs": nul');
      edge = await testEdge(opts);
      t.deepEqual(edge.rollouts.list(), []);
      t.true((await readdir(dir)).some((f) => f.startsWith('jobs.json.corrupt-')));
    } finally {
      await sub.endAsync();
      await edge.close();
      await rm(dir, { recursive: true, force: true });
    }
  },
);

test('a rollout spec is checked field by field before use', (t) => {
  const ok = {
    model: 'resnet9w05-cifar10@3',
    devices: ['cam-a'],
    groups: ['yard'],
    percent: 50,
    waves: [1, '50%', '100%'],
    gates: { maxErrorRate: 0.05, maxLatencyMs: null, minConfidence: 0.2, maxConfidenceDrop: 0.15 },
    minFrames: 20,
    soakMs: 60_000,
    applyTimeoutMs: 120_000,
    autoRollback: false,
  };
  t.deepEqual(parseRolloutSpec(ok), ok);
  t.deepEqual(parseRolloutSpec({ model: 'm@1' }), { model: 'm@1' });
  const bad: [unknown, RegExp][] = [
    [null, /spec must be an object/],
    [[], /spec must be an object/],
    [{ waves: 'x' }, /model/],
    [{ model: '../x' }, /model/],
    [{ ...ok, waves: 'x' }, /waves/],
    [{ ...ok, waves: [] }, /waves/],
    [{ ...ok, waves: [0] }, /bad wave 0/],
    [{ ...ok, waves: ['0%'] }, /bad wave/],
    [{ ...ok, waves: [{}] }, /bad wave/],
    [{ ...ok, devices: 'cam-a' }, /devices/],
    [{ ...ok, devices: ['a/b'] }, /devices/],
    [{ ...ok, groups: [1] }, /groups/],
    [{ ...ok, percent: 0 }, /percent/],
    [{ ...ok, percent: 101 }, /percent/],
    [{ ...ok, gates: { maxErrorRate: 2 } }, /maxErrorRate/],
    [{ ...ok, gates: { maxLatencyMs: -1 } }, /maxLatencyMs/],
    [{ ...ok, gates: { minConfidence: '0.2' } }, /minConfidence/],
    [{ ...ok, gates: { maxErrorrate: 0.1 } }, /unknown field "maxErrorrate"/],
    [{ ...ok, minFrames: 0 }, /minFrames/],
    [{ ...ok, minFrames: 1.5 }, /minFrames/],
    [{ ...ok, soakMs: '1000' }, /soakMs/],
    [{ ...ok, applyTimeoutMs: Infinity }, /applyTimeoutMs/],
    [{ ...ok, autoRollback: 'no' }, /autoRollback/],
    [{ ...ok, minframes: 3 }, /unknown field "minframes"/],
  ];
  for (const [spec, message] of bad)
    t.throws(() => parseRolloutSpec(spec), { message }, JSON.stringify(spec));
  t.is(ROLLOUT_DEFAULTS.gates.maxErrorRate, 0.05);
});
