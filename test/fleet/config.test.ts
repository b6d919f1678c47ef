/** The fleet file: parsing, every problem located by line and column, effective configs. */
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { effectiveConfig, effectiveConfigs } from '../../fleet-config/effective.js';
import {
  FleetConfigError,
  loadFleet,
  parseFleet,
  type FleetProblem,
} from '../../fleet-config/load.js';
import { fleetSchema } from '../../fleet-config/schema.js';
import { PROJECT_ROOT } from '../../core/paths.js';

const dir = join(PROJECT_ROOT, 'fleet-config');
const ctx = { codecs: ['split-q', 'jpeg-scan', 'splitfleet'], models: ['resnet9w05-cifar10'] };

function problems(text: string): FleetProblem[] {
  try {
    parseFleet(text, 'f.yaml', ctx);
  } catch (e) {
    if (e instanceof FleetConfigError) return e.problems;
    throw e;
  }
  return [];
}

test('the shipped example is valid; a device runs defaults <- group <- its own', async (t) => {
  const f = await loadFleet(join(dir, 'example.fleet.yaml'), ctx);
  const gate = effectiveConfig(f, 'gate-02');
  t.like(gate, { fleet: 'demo', group: 'gate-cameras', codec: 'splitfleet', point: 0, fps: 10 });
  t.is(gate.model, 'resnet9w05-cifar10'); // from the fleet defaults
  t.is(gate.source, 'sample'); // from the schema's defaults
  const bare = effectiveConfig(f, 'bench-jetson');
  t.like(bare, { group: null, codec: 'split-q', point: 2, fps: 5, credentials: null });
  t.is(effectiveConfigs(f).size, 4);
  t.throws(() => effectiveConfig(f, 'nobody'), { message: /not in fleet demo/ });
});

test('the config id names the content: same settings, same id; any change, a new one', (t) => {
  const base = 'version: 1\nfleet: f\ndevices:\n  a: {}\n  b: {}\n';
  const f = parseFleet(base, 'f.yaml', ctx);
  t.regex(effectiveConfig(f, 'a').configId, /^[0-9a-f]{16}$/);
  t.not(effectiveConfig(f, 'a').configId, effectiveConfig(f, 'b').configId); // device id is part of it
  const again = parseFleet(base.replace('  a: {}', '  a: {fps: 5}'), 'f.yaml', ctx); // 5 is the default
  t.is(effectiveConfig(again, 'a').configId, effectiveConfig(f, 'a').configId);
  const changed = parseFleet(base.replace('  a: {}', '  a: {fps: 6}'), 'f.yaml', ctx);
  t.not(effectiveConfig(changed, 'a').configId, effectiveConfig(f, 'a').configId);
});

test('every problem is reported at once, each at its line and column', (t) => {
  const text = [
    'version: 1', // 1
    'fleet: demo', // 2
    'defaults:', // 3
    '  codec: split-qq', // 4
    '  fsp: 5', // 5
    'groups:', // 6
    '  cams:', // 7
    '    point: 300', // 8
    'devices:', // 9
    '  cam-01:', // 10
    '    group: camz', // 11
    '    fps: -1', // 12
    '  "bad id!": {}', // 13
    '  cam-02:', // 14
    '    model: nosuch', // 15
  ].join('\n');
  const got = problems(text).map((p) => `${p.line}:${p.col} ${p.path}: ${p.message}`);
  t.deepEqual(got, [
    '4:10 defaults.codec: unknown codec "split-qq"; known: split-q, jpeg-scan, splitfleet',
    '5:3 defaults.fsp: unknown setting "fsp"',
    '8:12 groups.cams.point: must be <= 255',
    '11:12 devices.cam-01.group: unknown group "camz"; groups: cams',
    '12:10 devices.cam-01.fps: must be > 0',
    '13:3 devices.bad id!: invalid id "bad id!": use 1..64 of [A-Za-z0-9_.-]',
    '15:12 devices.cam-02.model: unknown model "nosuch"; the zoo has resnet9w05-cifar10',
  ]);
});

test('YAML syntax errors, a missing or newer version and a non-mapping are refused with a position', (t) => {
  const syntax = problems('version: 1\nfleet: [demo\n');
  t.is(syntax.length, 1);
  t.regex(syntax[0]!.message, /^YAML: /);
  t.true(syntax[0]!.line >= 2);
  t.deepEqual(
    problems('fleet: demo\n').map((p) => [p.line, p.message]),
    [[1, 'missing "version"']],
  );
  t.deepEqual(
    problems('version: 2\nfleet: demo\n').map((p) => [p.line, p.col, p.message]),
    [[1, 10, 'version 2 is newer than this splitfleet reads (1)']],
  );
  t.regex(problems('- a\n- b\n')[0]!.message, /a fleet file is a mapping/);
  t.regex(problems('version: 1\nfleet: d\nfleet: e\n')[0]!.message, /YAML: .*unique/i);
});

test('a name the zoo or the codec registry lacks is only checked when they are given', (t) => {
  const f = parseFleet('version: 1\nfleet: d\ndefaults: {model: other, codec: other}\n', 'f.yaml');
  t.is(f.defaults.codec, 'other');
});

test('fleet-config/fleet.schema.json is the schema the code validates with', async (t) => {
  const committed = JSON.parse(await readFile(join(dir, 'fleet.schema.json'), 'utf8')) as unknown;
  t.deepEqual(
    committed,
    fleetSchema(),
    'regenerate: splitfleet fleet schema > fleet-config/fleet.schema.json',
  );
});
