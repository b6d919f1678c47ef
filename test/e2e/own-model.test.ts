/**
 * Bring your own model, end to end, as a user would: a torchvision ResNet-18 (random
 * weights, fixed seed) exported to ONNX at 64x64 with three user labels, imported with
 * `splitfleet models import --split-at layer2` into a zoo folder of its own, listed by
 * `splitfleet models --zoo DIR`, and run by `splitfleet demo --zoo DIR --model N --data
 * FOLDER` on a generated ImageFolder of 120x90 JPEGs: every frame is answered; the
 * demo's edge and agents in process show every result carrying one of the user's
 * labels, with a feature codec and with an image codec (the edge then runs the whole
 * model on the 120x90 picture); bench rate runs on the same folder. A split after a flatten (a 1-D tensor named `/Flatten_output_0`)
 * goes through the same path, and the import's errors reach the user with their reason.
 * The models and images are made by test/e2e/own-model-setup.py with /usr/bin/python3;
 * without torch, torchvision and onnx there the tests are skipped (CI installs them).
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../device-agent/agent.js';
import { startEdge } from '../../edge-broker/edge.js';
import { resolveBundle, ZOO_ENV } from '../../core/model/zoo.js';
import { PROJECT_ROOT } from '../../core/paths.js';
import { lastJson, runCli, type CliRun } from '../helpers/cli.js';

const PYTHON = process.env.SPLITFLEET_PYTHON ?? '/usr/bin/python3';
const ready =
  spawnSync(PYTHON, ['-c', 'import torch, torchvision, onnx, PIL'], { timeout: 120_000 }).status ===
  0;
/** Skipped, each under its title, where /usr/bin/python3 lacks torch, torchvision or onnx. */
const maybe = ready ? test.serial : test.serial.skip;

const LABELS = ['person', 'vehicle', 'cat'];
let dir = '';
let zoo = '';
let cams = '';

test.before(async () => {
  if (!ready) return;
  dir = await mkdtemp(join(tmpdir(), 'sf-own-model-'));
  zoo = join(dir, 'zoo');
  cams = join(dir, 'cams');
  const r = spawnSync(
    PYTHON,
    [
      '-W',
      'ignore',
      join(PROJECT_ROOT, 'test', 'e2e', 'own-model-setup.py'),
      dir,
      LABELS.join(','),
      '120x90',
    ],
    { encoding: 'utf8', timeout: 300_000 },
  );
  if (r.status !== 0) throw new Error(`own-model-setup.py: ${r.stderr || String(r.error)}`);
});
test.after.always(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const importModel = (...args: string[]) =>
  runCli([
    'models',
    'import',
    '--labels',
    join(dir, 'labels.txt'),
    '--zoo',
    zoo,
    '--no-tfjs',
    ...args,
  ]);

const demo = async (t: { is: (a: unknown, b: unknown, m?: string) => void }, args: string[]) => {
  const r: CliRun = await runCli(
    ['demo', '--zoo', zoo, '--data', cams, '--json', '--fps', '0', ...args],
    {
      timeoutMs: 300_000,
    },
  );
  t.is(r.code, 0, r.stderr);
  return lastJson(r.stdout);
};

maybe(
  'a ResNet-18 imported after layer2 serves the demo on 120x90 images: every frame answered',
  async (t) => {
    const imp = await importModel(
      '--onnx',
      join(dir, 'resnet18.onnx'),
      '--split-at',
      'layer2',
      '--name',
      'mycams-r18',
    );
    t.is(imp.code, 0, imp.stderr);
    const out = lastJson(imp.stdout) as { bundle: string; split: string; tensorShape: number[] };
    t.regex(out.split, /^\/layer2\//);
    t.deepEqual(out.tensorShape, [128, 8, 8]);
    const m = JSON.parse(await readFile(join(out.bundle, 'manifest.json'), 'utf8')) as {
      labels: string[];
      preprocessing: { size: number[] };
    };
    t.deepEqual(m.labels, LABELS);
    t.deepEqual(m.preprocessing.size, [64, 64]);

    // the one resolver finds it through SPLITFLEET_ZOO, as every command does
    process.env[ZOO_ENV] = zoo;
    try {
      const b = await resolveBundle('mycams-r18');
      t.is(b.dir, out.bundle);
      t.deepEqual(b.manifest.labels, LABELS);
    } finally {
      delete process.env[ZOO_ENV];
    }

    const list = await runCli(['models', '--zoo', zoo]);
    t.is(list.code, 0, list.stderr);
    t.regex(
      list.stdout,
      /model mycams-r18@1 \(id 100\): onnx resnet18\.onnx, split after \/layer2\/.* \[128x8x8\]/,
    );

    const frames = 9;
    const s = await demo(t, [
      '--model',
      'mycams-r18',
      '--codec',
      'split-q',
      '--frames',
      String(frames),
      '--devices',
      '3',
    ]);
    t.is(s.model, 'mycams-r18@1');
    t.is(s.frames, frames);
    t.is(s.results, frames);
    t.is(s.errors, 0);
    t.is(s.lost, 0);
    // the demo's own count of the labels the edge answered with: the user's, every frame
    const labels = s.labels as Record<string, number>;
    t.true(Object.keys(labels).length > 0);
    for (const l of Object.keys(labels)) t.true(LABELS.includes(l), `label ${l}`);
    t.is(
      Object.values(labels).reduce((a, n) => a + n, 0),
      frames,
    );
  },
);

maybe('bench rate runs every codec on the ImageFolder with the bundle labels', async (t) => {
  const r = await runCli(
    [
      'bench',
      'rate',
      '--zoo',
      zoo,
      '--model',
      'mycams-r18',
      '--data',
      cams,
      '--timing',
      '0',
      '--json',
    ],
    { timeoutMs: 300_000 },
  );
  t.is(r.code, 0, r.stderr);
  const rep = lastJson(r.stdout) as {
    samples: number;
    model: string;
    rows: { method: string; point: string; payloadBytes: number; accuracy: number }[];
  };
  t.is(rep.model, 'mycams-r18@1');
  // 4 images per class, no train/ or test/: the last of each class is its test image
  t.is(rep.samples, LABELS.length);
  const methods = new Set(rep.rows.map((x) => x.method));
  for (const m of ['unsplit', 'split-q8', 'jpeg', 'jpeg-scan', 'webp', 'png'])
    t.true(methods.has(m), m);
  // no learned codec of the shipped zoo (CIFAR-10's labels, 32x32) joins a 64x64 model
  t.false(
    rep.rows.some((x) => ['aecnn', 'splitfleet', 'frankensplit', 'bottlenetpp'].includes(x.method)),
  );
  for (const x of rep.rows.filter((x) => x.method !== 'unsplit')) {
    t.true(x.payloadBytes > 0, `${x.method}/${x.point}`);
  }
});

maybe(
  'every result carries one of the user labels: a feature codec, and jpeg-scan on 120x90 pictures',
  async (t) => {
    // the demo's parts in process (cli/demo.ts composes the same edge and agents), so that
    // each result's label is seen
    process.env[ZOO_ENV] = zoo;
    const bundle = await resolveBundle('mycams-r18').finally(() => delete process.env[ZOO_ENV]);
    const edge = await startEdge({ bundles: [bundle], port: 0, wsPort: null, workers: 1 });
    t.teardown(() => edge.close());
    const frames = 6;
    for (const [codec, point] of [
      ['split-q', 0],
      ['jpeg-scan', 1],
    ] as const) {
      const agent = new Agent({
        url: edge.url,
        fleet: 'own',
        deviceId: `cam-${codec}`,
        bundle,
        codec,
        point,
        source: { source: cams, loop: true, limit: frames },
        fps: 0,
        resultTimeoutMs: 120_000,
      });
      const labels: string[] = [];
      agent.on('result', (r) => labels.push(r.label));
      try {
        await agent.start();
        const s = await agent.run();
        t.is(s.results, frames, codec);
        t.is(s.errors + s.lost, 0, codec);
        t.is(labels.length, frames, codec);
        t.deepEqual(
          labels.filter((l) => !LABELS.includes(l)),
          [],
          codec,
        );
      } finally {
        await agent.stop();
      }
    }
  },
);

maybe('a split after a flatten (a 1-D tensor, a name with "/") goes device -> edge', async (t) => {
  const imp = await importModel(
    '--onnx',
    join(dir, 'tiny.onnx'),
    '--split-at',
    '/Flatten_output_0',
    '--name',
    'tiny-flat',
  );
  t.is(imp.code, 0, imp.stderr);
  const out = lastJson(imp.stdout) as { split: string; tensorShape: number[] };
  t.is(out.split, '/Flatten_output_0');
  t.deepEqual(out.tensorShape, [8]);
  for (const codec of ['split-q', 'split-fp32']) {
    const s = await demo(t, [
      '--model',
      'tiny-flat',
      '--codec',
      codec,
      '--frames',
      '4',
      '--devices',
      '2',
    ]);
    t.is(s.results, 4, codec);
    t.is(s.errors, 0, codec);
  }
});

maybe('import errors reach the user with their reason', async (t) => {
  const onnx = join(dir, 'resnet18.onnx');
  const cases: [string[], RegExp][] = [
    [['--split-at', 'layer9'], /no such tensor or node 'layer9'/],
    [['--split-at', '/layer2/layer2.1/conv1/Conv_output_0'], /does not cut the graph/],
    [
      ['--split-at', 'layer2', '--labels', join(dir, 'labels2.txt')],
      /has 2 labels but the model outputs 3 classes/,
    ],
  ];
  for (const [args, why] of cases) {
    const r = await importModel('--onnx', onnx, '--name', 'broken', ...args);
    t.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, why);
  }
  const none = await runCli([
    'models',
    'import',
    '--onnx',
    onnx,
    '--split-at',
    'layer2',
    '--labels',
    join(dir, 'labels.txt'),
    '--name',
    'x',
  ]);
  t.not(none.code, 0);
  t.regex(none.stderr, /--zoo/);
});
