/**
 * The fleet file checked against bundles: each device's model, codec and point must make
 * a split plan of a bundle (the zoo's rule), reported where the setting is written, once
 * for the devices it concerns; operator overrides laid on a file and checked the same way.
 */
import test from 'ava';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scanZoo } from '../../core/model/zoo.js';
import { effectiveConfig } from '../../fleet-config/effective.js';
import {
  checkFleet,
  FleetConfigError,
  formatProblem,
  parseFleet,
  type FleetContext,
  type FleetProblem,
} from '../../fleet-config/load.js';
import {
  applyOverrides,
  emptyOverrides,
  loadOverrides,
  overriddenFor,
  parseOverrides,
  saveOverrides,
  withChange,
} from '../../fleet-config/overrides.js';
import { loadPlanSources } from '../../fleet-config/plans.js';
import { fleetContext } from '../../cli/commands/shared.js';
import { parseSetConfig } from '../../edge-broker/fleet/ops.js';

let zoo: Promise<FleetContext> | undefined;
const context = () => (zoo ??= fleetContext());

async function problems(text: string, ctx?: FleetContext): Promise<FleetProblem[]> {
  try {
    parseFleet(text, 'f.yaml', ctx ?? (await context()));
  } catch (e) {
    if (e instanceof FleetConfigError) return e.problems;
    throw e;
  }
  return [];
}

const fleet = (defaults: string, groups = '', devices = '  a: {}\n') =>
  `version: 1\nfleet: f\ndefaults: ${defaults}\ngroups:\n${groups || '  {}\n'}devices:\n${devices}`;

test('an operating point the codec lacks is an error with the valid range, where it is written', async (t) => {
  const found = await problems(fleet('{ codec: split-q, point: 9 }'));
  t.is(found.length, 1);
  t.like(found[0], { line: 3, path: 'defaults.point' });
  t.regex(found[0]!.message, /codec split-q has no operating point 9 \(has 0, 1, 2, 3\)/);
  t.regex(found[0]!.message, /resnet9w05-cifar10@2/);
});

test('a learned codec is checked against its own bundle; one problem names every device it concerns', async (t) => {
  const text = fleet(
    '{ codec: split-q, point: 2 }',
    '  gate: { codec: splitfleet, point: 7 }\n',
    '  a: { group: gate }\n  b: { group: gate }\n  c: { codec: aecnn, point: 1 }\n',
  );
  const found = await problems(text);
  t.is(found.length, 1);
  t.like(found[0], { line: 5, path: 'groups.gate.point' });
  // the newest splitfleet bundle's points
  const sf = (await scanZoo()).bundles
    .map((b) => b.manifest)
    .filter((m) => m.kind === 'codec' && m.codec.method === 'splitfleet')
    .sort((a, b) => b.version - a.version)[0]!;
  const has = sf.kind === 'codec' ? sf.codec.points.map((p) => p.index).join(', ') : '';
  t.true(
    found[0]!.message.includes(`codec splitfleet has no operating point 7 (has ${has})`),
    found[0]!.message,
  );
  t.regex(found[0]!.message, /devices a, b/);
  // the shipped example passes
  const example = await readFile(join('fleet-config', 'example.fleet.yaml'), 'utf8');
  t.deepEqual(await problems(example), []);
});

test('a model and codec no bundle serves is an error saying what there is', async (t) => {
  const { bundles } = await scanZoo();
  const backbone = bundles.find((b) => b.manifest.kind === 'backbone')!;
  const only = await loadPlanSources([{ dir: backbone.dir }], 'this edge');
  const found = await problems(fleet('{ codec: splitfleet, point: 0 }'), {
    plans: only,
  });
  t.is(found.length, 1);
  t.like(found[0], { path: 'defaults.codec' });
  t.regex(
    found[0]!.message,
    /no bundle serves model "resnet9w05-cifar10" with codec "splitfleet"; this edge has resnet9w05-cifar10@2/,
  );
  // an unloadable folder is named with its reason
  const broken = await loadPlanSources([{ dir: '/nonexistent/bundle' }]);
  t.is(broken.bundles.length, 0);
  t.regex(broken.broken![0]!.reason, /cannot read/);
});

test('overrides: parsed strictly, changed one key at a time, laid on the file and checked like it', async (t) => {
  t.throws(() => parseOverrides('{"version":1,"devices":{"a":{"source":"x"}}}', 'o.json'), {
    message: /o\.json: devices\.a: unknown setting "source"/,
  });
  t.throws(() => parseOverrides('{"version":2}', 'o.json'), { message: /version 2/ });
  t.throws(() => parseOverrides('[', 'o.json'), { message: /o\.json/ });
  const f = parseFleet(
    fleet(
      '{ codec: split-q, point: 2 }',
      '  gate: { codec: split-q, point: 1 }\n',
      '  a: { group: gate }\n  b: { point: 0 }\n',
    ),
    'f.yaml',
  );
  let o = withChange(emptyOverrides(), { target: { group: 'gate' }, set: { point: 3 } });
  o = withChange(o, { target: { device: 'b' }, set: { codec: 'split-fp16', fps: 7 } });
  const { fleet: merged, unknown } = applyOverrides(f, o);
  t.deepEqual(unknown, []);
  t.like(effectiveConfig(merged, 'a'), { codec: 'split-q', point: 3 });
  t.like(effectiveConfig(merged, 'b'), { codec: 'split-fp16', point: 0, fps: 7 });
  t.deepEqual(overriddenFor(f, o, 'a'), ['point']);
  t.deepEqual(overriddenFor(f, o, 'b'), ['codec', 'fps']);
  // null removes an override; an entry left empty goes
  const removed = withChange(o, { target: { device: 'b' }, set: { codec: null, fps: null } });
  t.deepEqual(removed.devices, {});
  // the same checks as the file: range and plan
  const ctx = await context();
  const tooFast = applyOverrides(f, withChange(o, { target: { device: 'a' }, set: { fps: 500 } }));
  const e1 = t.throws(() => checkFleet(tooFast.fleet, 'with overrides', ctx), {
    instanceOf: FleetConfigError,
  });
  t.regex(formatProblem(e1.problems[0]!), /^with overrides: devices\.a\.fps: must be <= 120/);
  const badPoint = applyOverrides(
    f,
    withChange(o, { target: { group: 'gate' }, set: { point: 9 } }),
  );
  const e2 = t.throws(() => checkFleet(badPoint.fleet, 'with overrides', ctx), {
    instanceOf: FleetConfigError,
  });
  t.regex(
    e2.message,
    /groups\.gate\.point: codec split-q has no operating point 9 \(has 0, 1, 2, 3\)/,
  );
  // overrides of what the file lacks are left out, and said
  const stray = applyOverrides(f, withChange(o, { target: { device: 'zz' }, set: { fps: 1 } }));
  t.deepEqual(stray.unknown, ['device zz']);
});

test('overrides are written atomically beside the fleet file and read back', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sf-overrides-'));
  try {
    const file = join(dir, 'fleet.yaml.overrides.json');
    t.deepEqual(await loadOverrides(file), emptyOverrides()); // none yet
    const o = withChange(emptyOverrides(), { target: { device: 'a' }, set: { point: 1 } });
    await saveOverrides(file, o);
    t.deepEqual(await loadOverrides(file), o);
    t.deepEqual(await readdir(dir), ['fleet.yaml.overrides.json']); // no temporary file left
    await writeFile(file, '{"version":1,"devices":{"a":{"point":"one"}}}');
    await t.throwsAsync(loadOverrides(file), { message: /devices\.a\.point: not an integer$/ });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a set-config body is checked field by field', (t) => {
  t.deepEqual(parseSetConfig({ device: 'a', set: { codec: 'split-q', point: null } }), {
    target: { device: 'a' },
    set: { codec: 'split-q', point: null },
  });
  t.deepEqual(parseSetConfig({ group: 'g', set: { fps: 2.5 } }), {
    target: { group: 'g' },
    set: { fps: 2.5 },
  });
  const refused = (body: Record<string, unknown>, why: RegExp) =>
    t.throws(() => parseSetConfig(body), { message: why });
  refused({ set: { fps: 1 } }, /exactly one of device and group/);
  refused({ device: 'a', group: 'g', set: { fps: 1 } }, /exactly one of device and group/);
  refused({ device: '../x', set: { fps: 1 } }, /device must be an id/);
  refused({ device: 'a' }, /set: not an object/);
  refused({ device: 'a', set: {} }, /names none of codec, point, fps/);
  refused({ device: 'a', set: { source: '/etc' } }, /unknown setting "source"/);
  refused({ device: 'a', set: { point: 1.5 } }, /set\.point: not an integer or null/);
  refused({ device: 'a', set: { fps: '5' } }, /set\.fps: not a number or null/);
});
