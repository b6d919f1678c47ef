/**
 * `splitfleet agent --config FILE` through the real CLI: a bad file is refused with every
 * problem at file:line:col; a good one runs the agent with flags overriding the file;
 * the shipped example and the file deploy/install.sh writes are valid agent configs.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveBundle } from '../../core/model/bundle.js';
import { PROJECT_ROOT } from '../../core/paths.js';
import { testEdge } from '../helpers/edge.js';
import { runCli } from '../helpers/cli.js';
import { shippedModel } from '../helpers/model.js';

const cli = (args: string[]) => runCli(args);

const lastJson = (s: string) => JSON.parse(s.trim().split('\n').at(-1)!) as Record<string, unknown>;

let dir = '';
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sf-agent-config-'));
});
test.after.always(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('a bad config file is refused with every problem at file:line:col', async (t) => {
  const file = join(dir, 'bad.yaml');
  await writeFile(
    file,
    [
      'device: cam-01',
      'fps: -3',
      'point: 300',
      'colour: red',
      'loop: "yes"',
      'codec: [a, b]',
      '',
    ].join('\n'),
  );
  const r = await cli(['agent', '--config', file]);
  t.is(r.code, 1);
  for (const line of [
    `${file}:2:6: fps: a non-negative number`,
    `${file}:3:8: point: an integer in 0..255`,
    `${file}:4:1: colour: unknown setting "colour"`,
    `${file}:5:7: loop: must be boolean`,
    `${file}:6:8: codec:`,
  ]) {
    t.true(r.stderr.includes(line), `missing ${line} in\n${r.stderr}`);
  }
  const yamlErr = join(dir, 'broken.yaml');
  await writeFile(yamlErr, 'device: a\n  fps: [\n');
  const r2 = await cli(['agent', '--config', yamlErr]);
  t.is(r2.code, 1);
  t.regex(r2.stderr, new RegExp(`${yamlErr}:\\d+:\\d+: YAML:`));
  const noDevice = join(dir, 'nodevice.yaml');
  await writeFile(noDevice, 'fps: 2\n');
  const r3 = await cli(['agent', '--config', noDevice]);
  t.is(r3.code, 1);
  t.regex(r3.stderr, /--device \(or "device:" in --config\) is required/);
});

test('the file configures the agent and flags win over it', async (t) => {
  const edge = await testEdge();
  try {
    const file = join(dir, 'agent.yaml');
    await writeFile(
      file,
      [
        'device: from-file',
        'url: mqtt://127.0.0.1:1', // nothing listens there: the flag below wins
        'fleet: cfg',
        'codec: split-q',
        'point: 2',
        'frames: 50',
        'fps: 0',
        'json: true',
        '',
      ].join('\n'),
    );
    const r = await cli(['agent', '--config', file, '--url', edge.url, '--frames', '3']);
    t.is(r.code, 0, r.stderr);
    const s = lastJson(r.stdout);
    t.is(s.sent, 3);
    t.is(s.results, 3);
    t.true(edge.devices().some((d) => d.device === 'from-file' && d.fleet === 'cfg'));
  } finally {
    await edge.close();
  }
});

test('the shipped example and the file install.sh writes are valid agent configs', async (t) => {
  const edge = await testEdge({
    bundles: [
      await shippedModel(),
      await resolveBundle('resnet9w05-cifar10', { codec: 'splitfleet' }),
    ],
  });
  try {
    const plan = spawnSync(
      'bash',
      [join(PROJECT_ROOT, 'deploy', 'install.sh'), '--dry-run', '--device', 'gate-02'].concat([
        '--url',
        'mqtt://edge.local:1883',
      ]),
      { encoding: 'utf8', timeout: 60_000 },
    );
    t.is(plan.status, 0, plan.stderr);
    const written = plan.stdout
      .split('would write /etc/splitfleet/agent.yaml')[1]!
      .split('\n')
      .slice(1);
    const yaml = written
      .slice(
        0,
        written.findIndex((l) => !l.startsWith('      | ')),
      )
      .map((l) => l.slice(8))
      .join('\n');
    const installed = join(dir, 'installed.yaml');
    await writeFile(installed, yaml + '\n');
    const example = join(dir, 'example.yaml');
    await writeFile(
      example,
      await readFile(join(PROJECT_ROOT, 'device-agent', 'agent.example.yaml'), 'utf8'),
    );
    for (const file of [installed, example]) {
      // the device's paths and camera are overridden by flags; the rest comes from the file
      const r = await cli([
        'agent',
        '--config',
        file,
        ...['--url', edge.url, '--source', 'sample', '--frames', '2', '--fps', '0', '--json'],
        ...['--outbox', join(dir, `outbox-${file.length}`), '--bundle-dir', join(dir, 'bundles')],
        '--tag-frames',
      ]);
      t.is(r.code, 0, `${file}: ${r.stderr}`);
      const s = lastJson(r.stdout);
      t.is(s.sent, 2, file);
      t.is(s.results, 2, file);
    }
  } finally {
    await edge.close();
  }
});
