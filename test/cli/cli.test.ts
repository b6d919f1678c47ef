/** The real command-line tool, run as a user would (from source through tsx). */
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT, SAMPLE_DIR } from '../../core/paths.js';
import { parseFleet } from '../../fleet-config/load.js';
import { testEdge } from '../helpers/edge.js';
import { lastJson, runCli } from '../helpers/cli.js';

const run = (args: string[], timeoutMs = 150_000) => runCli(args, { timeoutMs });

test('demo --json ends with the summary line', async (t) => {
  const r = await run([
    'demo',
    '--frames',
    '24',
    '--devices',
    '2',
    '--fps',
    '0',
    '--port',
    '0',
    '--ws-port',
    '0',
    '--json',
  ]);
  t.is(r.code, 0, r.stderr);
  const s = lastJson(r.stdout);
  for (const k of [
    'frames',
    'results',
    'errors',
    'lost',
    'accuracy',
    'bytesPerFrame',
    'compressionRatio',
    'latencyMs',
    'model',
    'codec',
  ]) {
    t.true(k in s, k);
  }
  t.is(s.frames, 24);
  t.is(s.results, 24);
  t.is(s.lost, 0);
  t.true((s.compressionRatio as number) > 1);
  t.regex(r.stderr, /mosquitto_sub/);
});

test('bench rate --limit --json prints a table and one JSON object last', async (t) => {
  const r = await run([
    'bench',
    'rate',
    '--data',
    SAMPLE_DIR,
    '--limit',
    '20',
    '--batch',
    '10',
    '--timing',
    '3',
    '--json',
  ]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /LIMITED run/);
  const j = lastJson(r.stdout) as {
    samples: number;
    rows: Record<string, unknown>[];
    unsplitAccuracy: number;
  };
  t.is(j.samples, 20);
  const methods = new Set(j.rows.map((x) => x.method));
  for (const m of [
    'unsplit',
    'split-fp32',
    'split-fp16',
    'split-q8',
    'jpeg',
    'jpeg-scan',
    'webp',
    'png',
  ])
    t.true(methods.has(m), m);
  const fp32 = j.rows.find((x) => x.method === 'split-fp32')!;
  t.is(fp32.ratioVsSplitTensor, Math.round((65536 / (fp32.bytesPerSample as number)) * 100) / 100);
  t.is(fp32.accuracy, j.unsplitAccuracy, 'the lossless split equals the unsplit model');
  for (const row of j.rows) {
    for (const k of [
      'method',
      'point',
      'bytesPerSample',
      'ratioVsSplitTensor',
      'accuracy',
      'drop',
      'encoderFlops',
      'encoderMsPerSample',
      'decoderMsPerSample',
    ])
      t.true(k in row, k);
  }
  // each payload also as a wire v2 frame: a header of at most 8 B, where v1's is over 20
  for (const row of j.rows.filter((x) => x.method !== 'unsplit')) {
    const v2 = (row.framedV2Bytes as number) - (row.payloadBytes as number);
    const v1 = (row.bytesPerSample as number) - (row.payloadBytes as number);
    t.true(v2 > 0 && v2 <= 8, `${String(row.method)}: ${v2} B of v2 header`);
    t.true(v1 > 20, `${String(row.method)}: ${v1} B of v1 header`);
    t.true((row.wireV2Bytes as number) < (row.wireBytes as number));
  }
  // rANS codecs write the trimmed layout: every row smaller than the same symbols in version 1
  const rans = j.rows.filter((x) =>
    ['splitfleet', 'frankensplit', 'aecnn'].includes(String(x.method)),
  );
  t.true(rans.length >= 3);
  for (const row of rans) {
    const [now, old] = [row.payloadBytes as number, row.payloadVersion1Bytes as number];
    t.true(now < old, `${String(row.method)} ${String(row.point)}: ${now} B vs ${old} B`);
  }
  // the device runs the head for split rows, the whole model for unsplit, no network for offload
  const flops = (m: string) => j.rows.find((x) => x.method === m)!.encoderFlops as number;
  t.true(flops('unsplit') > flops('split-fp32') && flops('split-fp32') > 0);
  t.is(flops('webp'), 0);
  t.true((fp32.encoderMsPerSample as number) > 0 && (fp32.decoderMsPerSample as number) > 0);
});

test('bench rate --methods keeps only those methods and the unsplit reference', async (t) => {
  const r = await run([
    'bench',
    'rate',
    '--data',
    SAMPLE_DIR,
    '--limit',
    '8',
    '--timing',
    '0',
    '--codecs',
    'none',
    '--methods',
    'split-fp16',
    'webp',
    '--json',
  ]);
  t.is(r.code, 0, r.stderr);
  const j = lastJson(r.stdout) as { rows: { method: string }[] };
  t.deepEqual([...new Set(j.rows.map((x) => x.method))].sort(), ['split-fp16', 'unsplit', 'webp']);
  const bad = await run([
    'bench',
    'rate',
    '--data',
    SAMPLE_DIR,
    '--limit',
    '1',
    '--methods',
    'wepb',
  ]);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /--methods: no method wepb/);
});

test('bad input to the CLI is a clear error, not a stack trace', async (t) => {
  const r1 = await run(['demo', '--model', 'nope', '--frames', '1']);
  t.is(r1.code, 1);
  t.regex(r1.stderr, /unknown model "nope"/);
  const r2 = await run(['bench', 'rate', '--data', '/nonexistent', '--limit', '1']);
  t.is(r2.code, 1);
  t.regex(r2.stderr, /not found/);
  const r3 = await run(['demo', '--frames', 'x']);
  t.not(r3.code, 0);
  t.regex(r3.stderr, /integer/);
});

test('fleet validate: exit 0 on a valid file, 1 with file:line:col problems otherwise', async (t) => {
  const example = join(PROJECT_ROOT, 'fleet-config', 'example.fleet.yaml');
  const ok = await run(['fleet', 'validate', example]);
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stdout, /valid \(fleet demo, 4 devices\)/);
  const dir = await mkdtemp(join(tmpdir(), 'sf-fleet-'));
  try {
    const bad = join(dir, 'bad.yaml');
    await writeFile(
      bad,
      'version: 1\nfleet: demo\ndevices:\n  cam:\n    codec: nosuch\n    fps: 0\n',
    );
    const r = await run(['fleet', 'validate', bad, '--json']);
    t.is(r.code, 1);
    const out = lastJson(r.stdout) as {
      valid: boolean;
      problems: { line: number; col: number; message: string }[];
    };
    t.false(out.valid);
    t.deepEqual(
      out.problems.map((p) => [p.line, p.col]),
      [
        [5, 12],
        [6, 10],
      ],
    );
    t.regex(out.problems[0]!.message, /unknown codec "nosuch"; known: .*splitfleet/);
    const show = await run(['fleet', 'show', example, '--device', 'lab-pi']);
    t.is(show.code, 0, show.stderr);
    t.like(lastJson(show.stdout), {
      device: 'lab-pi',
      codec: 'jpeg-scan',
      fps: 2,
      source: '/data/images.tar.gz',
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('fleet rollout / jobs / models talk to a running edge; a refused rollout exits 1 with the reason', async (t) => {
  const edge = await testEdge({
    edgeId: 'edge-cli',
    fleet: 'cli',
    fleetFile: parseFleet('version: 1\nfleet: cli\ndevices:\n  cam: {}\n'),
  });
  try {
    const at = ['--url', edge.url, '--fleet', 'cli', '--edge', 'edge-cli'];
    const models = await run(['fleet', 'models', ...at, '--json']);
    t.is(models.code, 0, models.stderr);
    t.deepEqual(
      (JSON.parse(models.stdout) as { ref: string }[]).map((m) => m.ref),
      ['resnet9w05-cifar10@2'],
    );
    const bad = await run(['fleet', 'rollout', ...at, '--model', 'resnet9w05-cifar10@7']);
    t.is(bad.code, 1);
    t.regex(bad.stderr, /not in the edge's registry/);
    const jobs = await run(['fleet', 'jobs', ...at, '--json']);
    t.is(jobs.code, 0, jobs.stderr);
    t.deepEqual(JSON.parse(jobs.stdout), []);
    const none = await run(['fleet', 'rollback', ...at, 'job-x']);
    t.is(none.code, 1);
    t.regex(none.stderr, /no job job-x/);
  } finally {
    await edge.close();
  }
});

test('bench connections: simulated devices on an edge process, presence tracked, wills on a cut', async (t) => {
  const r = await run(['bench', 'connections', '--count', '300', '--json']);
  t.is(r.code, 0, r.stderr);
  const j = lastJson(r.stdout);
  t.like(j, { connections: 300, connected: 300, devicesOnline: 300, devicesOnlineAfterCut: 0 });
  t.true((j.edgeRssMiB as { connected: number }).connected > 0);
});

test('--version prints the version of the package', async (t) => {
  const r = await runCli(['--version']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout.trim(), /^\d+\.\d+\.\d+$/);
});

test('models import / split-points run the toolkit with the flags given, errors named', async (t) => {
  const help = await runCli(['models', 'import', '--help']);
  if (help.code !== 0 && /No module named|SPLITFLEET_PYTHON/.test(help.stderr)) {
    t.log(`skipped: the Python toolkit cannot run here (${help.stderr.trim().slice(0, 200)})`);
    t.pass();
    return;
  }
  t.is(help.code, 0, help.stderr);
  t.regex(help.stdout, /--split-at/);
  const missing = await runCli(['models', 'split-points', '/no/such/model.onnx']);
  t.is(missing.code, 2);
  t.regex(missing.stderr, /split_points: .*no\/such\/model\.onnx/);
});
