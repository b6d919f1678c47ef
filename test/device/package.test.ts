/**
 * The device agent's package (scripts/pack-agent.ts, `npm run pack:agent`), built from the
 * current source into a temporary folder and packed: its dependencies are the packages
 * its modules import and none of the edge's, and installed from the tarball into an empty
 * prefix, as deploy/install.sh installs it, `splitfleet-agent --help` runs and every module
 * it ships loads. The install reads the npm cache only (npm ci fills it); where the cache
 * lacks a package, or npm cannot pack, that test is skipped with the reason in the log.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PROJECT_ROOT } from '../../core/paths.js';
import { AGENT_PACKAGE, packAgent, type PackResult } from '../../scripts/pack-agent.js';

const EDGE_ONLY = [
  'node-red',
  '@flowfuse/node-red-dashboard',
  'vega',
  'vega-lite',
  'aedes',
  'aedes-persistence-redis',
  'mqemitter-redis',
  'ioredis',
];

interface Manifest {
  name: string;
  bin: Record<string, string>;
  dependencies: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

let dir = '';
let packed: PackResult | { skipped: string };

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sf-agent-pack-'));
  const dist = join(dir, 'dist');
  // the agent's entry and everything it imports, built from the current source
  const tsc = join(PROJECT_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  spawnSync(process.execPath, [tsc, '-p', 'deploy/tsconfig.json', '--outDir', dist], {
    cwd: PROJECT_ROOT,
    encoding: 'utf8',
    timeout: 120_000,
  });
  try {
    packed = await packAgent({ dist, out: dir, stage: join(dir, 'stage') });
  } catch (e) {
    if (!(e instanceof Error) || !/npm pack failed/.test(e.message)) throw e;
    packed = { skipped: e.message };
  }
});

test.after.always(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function files(root: string, under = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(root, under), { withFileTypes: true })) {
    const rel = under ? `${under}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await files(root, rel)));
    else out.push(rel);
  }
  return out;
}

test("the agent package's dependencies are what its modules import, none of the edge's", async (t) => {
  if ('skipped' in packed) {
    t.log(`skipped: ${packed.skipped}`);
    return t.pass();
  }
  const stage = packed.stage;
  const pkg = JSON.parse(await readFile(join(stage, 'package.json'), 'utf8')) as Manifest;
  const root = JSON.parse(await readFile(join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
    version: string;
    dependencies: Record<string, string>;
    optionalDependencies: Record<string, string>;
  };
  const lock = JSON.parse(await readFile(join(PROJECT_ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version?: string }>;
  };
  t.is(pkg.name, AGENT_PACKAGE);
  t.deepEqual(Object.keys(pkg.bin), ['splitfleet-agent']);
  const all = { ...pkg.dependencies, ...pkg.optionalDependencies };
  for (const edge of EDGE_ONLY) t.false(edge in all, `${edge} is a dependency of the agent`);
  // what a device needs to run the agent at all
  for (const need of ['mqtt', 'msgpackr', 'onnxruntime-node', 'commander']) {
    t.truthy(pkg.dependencies[need], `${need} is missing`);
  }
  // each one a dependency of the project, at the version it is tested with
  for (const [name, version] of Object.entries(all)) {
    t.truthy(root.dependencies[name] ?? root.optionalDependencies[name], name);
    t.is(version as string | undefined, lock.packages[`node_modules/${name}`]?.version, name);
  }
  // the modules: the agent's, not the broker's, Node-RED's or the benchmarks'
  const shipped = await files(join(stage, 'app', 'dist'));
  t.true(shipped.includes('deploy/agent-entry.js'));
  t.true(shipped.includes('device-agent/agent.js'));
  t.true(shipped.includes('core/engine/onnx.js'), 'an engine loaded by a dynamic import');
  for (const f of shipped) {
    t.false(/^(bench\/|edge-broker\/(broker|node-red|cluster|edge)\.js)/.test(f), f);
  }
  t.true(existsSync(join(stage, 'app', 'models', 'zoo')));
  t.true(existsSync(join(stage, 'app', 'models', 'samples', 'cifar10-test-sample')));
  const marker = JSON.parse(await readFile(join(stage, 'app', 'package.json'), 'utf8')) as {
    name: string;
  };
  t.is(marker.name, 'splitfleet', 'core/paths.ts finds the package root by this name');
});

test('splitfleet-agent --help runs from an install of the tarball in an empty prefix', async (t) => {
  if ('skipped' in packed) {
    t.log(`skipped: ${packed.skipped}`);
    return t.pass();
  }
  const prefix = join(dir, 'prefix');
  const env = { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' };
  const install = spawnSync(
    'npm',
    [
      'install',
      '-g',
      '--prefix',
      prefix,
      '--offline',
      '--omit=dev',
      '--no-fund',
      '--no-audit',
    ].concat(['--loglevel=error', packed.tgz]),
    { encoding: 'utf8', env, timeout: 150_000 },
  );
  if (install.status !== 0 && /ENOTCACHED|only-if-cached|ENOTFOUND/.test(install.stderr)) {
    t.log(`skipped: the npm cache lacks a package: ${install.stderr.trim().split('\n')[0]}`);
    return t.pass();
  }
  t.is(install.status, 0, install.stderr);
  const home = join(prefix, 'lib', 'node_modules', AGENT_PACKAGE);
  for (const edge of EDGE_ONLY) t.false(existsSync(join(home, 'node_modules', edge)), edge);

  const help = spawnSync(join(prefix, 'bin', 'splitfleet-agent'), ['--help'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.is(help.status, 0, help.stderr);
  for (const flag of ['--config <file>', '--device <id>', '--url <url>', '--engine <name>']) {
    t.true(help.stdout.includes(flag), `help lacks ${flag}`);
  }

  // every shipped module loads: its imports resolve in the installed package
  const modules = (await files(join(home, 'app', 'dist')))
    .filter((f) => f.endsWith('.js') && !['deploy/agent-entry.js', 'cli/main.js'].includes(f))
    .map((f) => pathToFileURL(join(home, 'app', 'dist', f)).href);
  const load = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `for (const m of ${JSON.stringify(modules)}) await import(m); console.log('loaded');`,
    ],
    { encoding: 'utf8', cwd: dir, timeout: 60_000 },
  );
  t.is(load.status, 0, load.stderr);
  t.is(load.stdout.trim().split('\n').at(-1), 'loaded');
});
