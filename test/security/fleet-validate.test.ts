/**
 * Checking a fleet file costs time in proportion to its devices (the edge checks it again
 * at every edit), valid or with a problem on every device, and the edge can check it on
 * a worker thread with the same result while its event loop keeps running. Publishing
 * every device's config after such an edit looks up each device's rollout pin: that is
 * linear too.
 */
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  FleetConfigError,
  loadFleet,
  parseFleet,
  type FleetContext,
} from '../../fleet-config/load.js';
import { loadFleetInWorker } from '../../fleet-config/load-worker.js';
import { ModelRegistry } from '../../edge-broker/fleet/registry.js';
import { RolloutManager } from '../../edge-broker/fleet/rollout.js';
import { shippedModel } from '../helpers/model.js';

const CTX: FleetContext = {
  codecs: ['split-q', 'split-fp16', 'jpeg'],
  models: ['resnet9w05-cifar10'],
};

/** A fleet of `n` devices in two groups; `broken`: every device names an unknown codec. */
function fleetText(n: number, broken = false): string {
  const lines = [
    'version: 1',
    'fleet: big',
    'defaults: { codec: split-q, point: 2, fps: 5 }',
    'groups:',
    '  lobby: { fps: 10 }',
    '  dock: { codec: jpeg }',
    'devices:',
  ];
  for (let i = 0; i < n; i++) {
    const codec = broken ? ', codec: nope' : '';
    lines.push(`  cam-${i}: { group: ${i % 2 ? 'lobby' : 'dock'}, point: ${i % 4}${codec} }`);
  }
  return lines.join('\n') + '\n';
}

/** CPU time of one check, ms: best of two runs (CPU time, not wall time: other processes
 * on a busy machine do not count). */
function timeParse(text: string): number {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 2; i++) {
    const t0 = process.cpuUsage();
    try {
      parseFleet(text, 'big.yaml', CTX);
    } catch (e) {
      if (!(e instanceof FleetConfigError)) throw e;
    }
    const { user, system } = process.cpuUsage(t0);
    best = Math.min(best, (user + system) / 1000);
  }
  return best;
}

let dir = '';
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sf-fleet-validate-'));
});
test.after.always(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

for (const broken of [false, true]) {
  test.serial(
    `checking ${broken ? 'a fleet with a problem on every device' : 'a valid fleet'} is linear in its devices`,
    (t) => {
      timeParse(fleetText(2_000, broken)); // warm up the parser and the schema
      const small = timeParse(fleetText(20_000, broken));
      const large = timeParse(fleetText(80_000, broken));
      t.log(`20k devices: ${small.toFixed(0)} ms, 80k devices: ${large.toFixed(0)} ms`);
      // 4x the devices: about 4x the time; quadratic would be 16x
      t.true(large < 8 * small + 1500, `80k took ${large} ms, 20k took ${small} ms`);
    },
  );
}

test('every problem keeps its line, also with many devices', (t) => {
  const err = t.throws(() => parseFleet(fleetText(5_000, true), 'big.yaml', CTX), {
    instanceOf: FleetConfigError,
  });
  t.is(err.problems.length, 5_000);
  const last = err.problems[4_999]!;
  t.is(last.path, 'devices.cam-4999.codec');
  t.is(last.line, 7 + 5_000);
  t.true(last.col > 1);
});

test('a repeated device id is refused at its line', (t) => {
  const text = fleetText(3).replace(/\n$/, '\n  cam-1: { point: 1 }\n');
  const err = t.throws(() => parseFleet(text, 'dup.yaml'), { instanceOf: FleetConfigError });
  t.is(err.problems.length, 1);
  t.regex(err.problems[0]!.message, /YAML: .*unique/i);
  t.is(err.problems[0]!.line, 11);
  t.is(err.problems[0]!.col, 3);
});

test.serial(
  'the worker checks a file with the same result, and the event loop keeps running',
  async (t) => {
    const valid = join(dir, 'valid.yaml');
    const broken = join(dir, 'broken.yaml');
    await writeFile(valid, fleetText(40_000));
    await writeFile(broken, fleetText(2_000, true));

    let ticks = 0;
    let last = performance.now();
    let maxGap = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      ticks++;
    }, 10);
    let inWorker;
    try {
      inWorker = await loadFleetInWorker(valid, CTX);
    } finally {
      clearInterval(timer);
    }
    t.log(
      `${ticks} ticks while the worker checked 40k devices; longest gap ${maxGap.toFixed(0)} ms`,
    );
    t.true(ticks >= 5, 'the event loop ran while the worker checked the file');
    t.true(maxGap < 500, `the event loop stalled for ${maxGap} ms`);
    t.deepEqual(inWorker, await loadFleet(valid, CTX));

    const a = await t.throwsAsync(loadFleetInWorker(broken, CTX), { instanceOf: FleetConfigError });
    const b = await t.throwsAsync(loadFleet(broken, CTX), { instanceOf: FleetConfigError });
    t.deepEqual(a.problems, b.problems);
    t.is(a.message, b.message);

    const missing = join(dir, 'missing.yaml');
    const c = await t.throwsAsync(loadFleetInWorker(missing, CTX), {
      instanceOf: FleetConfigError,
    });
    t.regex(c.message, /cannot read/);
  },
);

test.serial(
  'the pins of a rollout to every device are found in time linear in the devices',
  async (t) => {
    const bundle = await shippedModel();
    const ref = `${bundle.manifest.name}@${bundle.manifest.version}`;
    /** CPU ms to look up the pin of each of `n` devices, all deployed by one job. */
    const pinsOf = async (n: number): Promise<number> => {
      const devices = Array.from({ length: n }, (_, i) => `cam-${i}`);
      const stateFile = join(dir, `jobs-${n}.json`);
      const job = { jobId: 'job-1', state: 'SUCCEEDED', spec: { model: ref }, deployed: devices };
      await writeFile(stateFile, JSON.stringify({ jobs: [job] }));
      const rollouts = new RolloutManager(
        {
          fleet: () => null,
          registry: new ModelRegistry([bundle]),
          republish: () => Promise.resolve(),
          configState: () => undefined,
          changed: () => undefined,
        },
        { stateFile },
      );
      await rollouts.load();
      const t0 = process.cpuUsage();
      let pinned = 0;
      for (const d of devices) if (rollouts.overrideFor(d)?.model === ref) pinned++;
      const { user, system } = process.cpuUsage(t0);
      await rollouts.close();
      t.is(pinned, n);
      return (user + system) / 1000;
    };
    await pinsOf(1_000);
    const small = await pinsOf(20_000);
    const large = await pinsOf(80_000);
    t.log(`20k devices: ${small.toFixed(0)} ms, 80k devices: ${large.toFixed(0)} ms`);
    t.true(large < 8 * small + 500, `80k took ${large} ms, 20k took ${small} ms`);
  },
);
