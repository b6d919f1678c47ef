/**
 * `splitfleet agent --config FILE` through the real CLI: a bad file is refused with every
 * problem at file:line:col; a good one runs the agent with flags overriding the file;
 * the shipped example and the file deploy/install.sh writes are valid agent configs.
 * And the configs the edge sends at run time: the latest wins, also over one still
 * downloading its bundle.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveBundle } from '../../core/model/bundle.js';
import { PROJECT_ROOT } from '../../core/paths.js';
import { CONFIG_VERSION, type ConfigMessage } from '../../core/wire/messages.js';
import { bundleRefString, type FetchRequest } from '../../core/wire/ota.js';
import { Bus } from '../../device-agent/bus.js';
import { RuntimeConfig } from '../../device-agent/config.js';
import { Head } from '../../device-agent/head.js';
import { BundleUpdater } from '../../device-agent/updater.js';
import { waitFor } from '../helpers/wait.js';
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

test('a newer config wins over one still downloading its bundle: that download is abandoned', async (t) => {
  const bundle = await shippedModel();
  const head = new Head(1);
  const settings = {
    bundle,
    codec: 'split-q',
    point: 2,
    fps: 0,
    latencyGoalMs: null,
    maxKbps: null,
    engine: 'auto' as const,
    configId: null,
  };
  await head.start(settings);
  const store = await mkdtemp(join(tmpdir(), 'sf-config-store-'));
  // an edge that takes the fetch requests and never answers them (a slow link): without
  // the newer config the older one would wait for every try of every chunk
  const fetches: FetchRequest[] = [];
  const updater = new BundleUpdater({ dir: store, timeoutMs: 60_000 }, (req) => {
    fetches.push(req);
    return Promise.resolve();
  });
  const answers: { status: string; configId: string | null }[] = [];
  const config = new RuntimeConfig(settings, {
    deviceId: 'cam',
    source: 'sample',
    head,
    bus: new Bus('cam'),
    updater,
    answer: (body) => {
      const r = JSON.parse(body) as { status: string; data: { configId: string | null } };
      answers.push({ status: r.status, configId: r.data.configId });
      return Promise.resolve();
    },
    announce: () => Promise.resolve(),
  });
  const message = (configId: string, point: number, withBundle: boolean): Buffer => {
    const m: ConfigMessage = {
      v: CONFIG_VERSION,
      configId,
      fleet: 'f',
      device: 'cam',
      group: null,
      settings: {
        model: bundle.manifest.name,
        codec: 'split-q',
        point,
        latencyGoalMs: null,
        maxKbps: null,
        fps: 0,
        source: 'sample',
        credentials: null,
      },
      ts: Date.now(),
    };
    // a version of the model the device does not have: fetched over the air
    if (withBundle)
      m.bundle = { name: bundle.manifest.name, version: 99, manifestSha256: 'ab'.repeat(32) };
    return Buffer.from(JSON.stringify(m));
  };
  try {
    config.onMessage(message('older', 1, true));
    await waitFor(() => fetches.length > 0); // its download has started
    t.is(fetches[0]!.bundle, bundleRefString({ ...bundle.manifest, version: 99 }));
    config.onMessage(message('newer', 0, false));
    await waitFor(() => config.settings.configId === 'newer');
    await config.settled();
    t.is(config.settings.point, 0);
    t.deepEqual(answers, [{ status: 'ok', configId: 'newer' }], 'the older is never answered');
    // the older download is given up at once, without waiting for its chunks' timeouts
    await waitFor(() => updater.downloading === 0);
    const asked = fetches.length;
    config.onMessage(message('newer', 0, false)); // a redelivery: answered again
    await config.settled();
    t.is(answers.length, 2);
    t.is(fetches.length, asked);
    t.is(config.settings.configId, 'newer', 'the older one never overwrote it');
  } finally {
    updater.close();
    await head.stop();
    await rm(store, { recursive: true, force: true });
  }
});
