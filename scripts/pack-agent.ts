/**
 * The device agent as its own npm package, `splitfleet-agent`: what a device installs
 * (deploy/install.sh), without the edge's dependencies (Node-RED, its dashboard, vega,
 * aedes, the Redis clients).
 *
 *   npm run pack:agent                  # builds, then writes ./splitfleet-agent-<version>.tgz
 *   node --import tsx scripts/pack-agent.ts [--dist DIR] [--out DIR] [--stage DIR] [--json]
 *
 * What goes in is computed, not listed. From the agent's entry (dist/deploy/agent-entry.js)
 * the built modules are followed through their static imports and their dynamic imports
 * with a literal specifier (the engines load that way); a command registry's dynamic
 * imports (cli/main.js: the other commands, loaded when they run) are not followed. The npm
 * packages the reached modules import become the package's dependencies, at the versions
 * of the root package-lock.json (the ones the project is tested with); a root optional
 * dependency that a reached module names in a string (a specifier held in a variable)
 * becomes an optional one. A reached import of an edge-only package (EDGE_ONLY) or of a
 * package the root does not depend on fails the pack. The model zoo and the sample the
 * agent reads (core/paths.ts) go with it. (No npm-shrinkwrap.json: `npm install -g` of a
 * tarball ignores one.)
 *
 * Layout of the package (`npm install -g` links bin/splitfleet-agent):
 *   package.json, README.md
 *   app/package.json      {"name": "splitfleet"}: the root core/paths.ts looks for
 *   app/dist/...          the reached modules, as built
 *   app/models/zoo/, app/models/samples/cifar10-test-sample/, app/device-agent/agent.example.yaml
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { parseArgs } from 'node:util';
import ts from 'typescript';
import { PROJECT_ROOT } from '../core/paths.js';

export const AGENT_PACKAGE = 'splitfleet-agent';
/** The agent's entry, relative to dist/. */
export const AGENT_ENTRY = 'deploy/agent-entry.js';
/** Modules whose dynamic imports load other commands: not followed. */
export const COMMAND_REGISTRIES = ['cli/main.js'];
/** Packages only the edge, Node-RED or the benchmarks need: never in the agent package. */
export const EDGE_ONLY = [
  'node-red',
  '@flowfuse/node-red-dashboard',
  'vega',
  'vega-lite',
  'aedes',
  'aedes-persistence-redis',
  'mqemitter-redis',
  'ioredis',
  'prom-client',
];
/** Files the agent reads at run time, relative to the project root. */
const ASSETS = [
  'models/zoo',
  'models/samples/cifar10-test-sample',
  'device-agent/agent.example.yaml',
];

export interface Trace {
  /** Reached modules, relative to dist/, in the order found. */
  modules: string[];
  /** npm package -> the first reached module that imports it. */
  packages: Map<string, string>;
  /** String literals of reached modules that are among the candidates asked about. */
  named: Set<string>;
}

interface Imports {
  static: string[];
  dynamic: string[];
  strings: string[];
}

/** The import specifiers and string literals of one built module. */
function importsOf(file: string, code: string): Imports {
  const sf = ts.createSourceFile(file, code, ts.ScriptTarget.Latest, false, ts.ScriptKind.JS);
  const out: Imports = { static: [], dynamic: [], strings: [] };
  const visit = (n: ts.Node): void => {
    if (
      (ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) &&
      n.moduleSpecifier &&
      ts.isStringLiteral(n.moduleSpecifier)
    ) {
      out.static.push(n.moduleSpecifier.text);
      return;
    }
    if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = n.arguments;
      if (arg && ts.isStringLiteralLike(arg)) out.dynamic.push(arg.text);
    } else if (ts.isStringLiteralLike(n)) {
      out.strings.push(n.text);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

/** The npm package of a bare specifier ('@a/b/c' -> '@a/b', 'a/b' -> 'a'); null: Node's own. */
export function packageOf(spec: string): string | null {
  if (spec.startsWith('node:') || builtinModules.includes(spec)) return null;
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/** The modules and packages reachable from `entry` (relative to `dist`). */
export async function traceAgent(
  dist: string,
  entry = AGENT_ENTRY,
  candidates: ReadonlySet<string> = new Set(),
): Promise<Trace> {
  const trace: Trace = { modules: [], packages: new Map(), named: new Set() };
  const seen = new Set<string>();
  const queue = [entry];
  for (let mod = queue.shift(); mod !== undefined; mod = queue.shift()) {
    if (seen.has(mod)) continue;
    seen.add(mod);
    trace.modules.push(mod);
    const file = join(dist, mod);
    if (!existsSync(file)) throw new Error(`${mod}: not built (run npm run build)`);
    if (!mod.endsWith('.js')) continue;
    const found = importsOf(file, await readFile(file, 'utf8'));
    const specs = COMMAND_REGISTRIES.includes(mod)
      ? found.static
      : [...found.static, ...found.dynamic];
    for (const spec of specs) {
      if (spec.startsWith('.')) {
        const target = relative(dist, resolve(dirname(file), spec))
          .split(sep)
          .join('/');
        if (target.startsWith('..')) throw new Error(`${mod} imports ${spec}, outside dist/`);
        queue.push(target);
      } else {
        const pkg = packageOf(spec);
        if (pkg && !trace.packages.has(pkg)) trace.packages.set(pkg, mod);
      }
    }
    for (const s of found.strings) if (candidates.has(s)) trace.named.add(s);
  }
  return trace;
}

interface PackageJson {
  name: string;
  version: string;
  description?: string;
  license?: string;
  engines?: Record<string, string>;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

interface Lockfile {
  packages: Record<string, { version?: string }>;
}

/** The agent package's package.json: dependencies computed from the trace. */
export function agentManifest(
  root: PackageJson,
  lock: Lockfile,
  trace: Trace,
): Record<string, unknown> {
  // the version the project is tested with, else the root's range
  const pinned = (pkg: string, range: string) =>
    lock.packages[`node_modules/${pkg}`]?.version ?? range;
  const dependencies: Record<string, string> = {};
  for (const [pkg, by] of [...trace.packages].sort(([a], [b]) => a.localeCompare(b))) {
    const range = root.dependencies?.[pkg];
    if (!range) throw new Error(`${by} imports ${pkg}, which is not a dependency of ${root.name}`);
    if (EDGE_ONLY.includes(pkg)) throw new Error(`${by} imports ${pkg}: an edge-only package`);
    dependencies[pkg] = pinned(pkg, range);
  }
  const optionalDependencies: Record<string, string> = {};
  for (const [pkg, range] of Object.entries(root.optionalDependencies ?? {})) {
    if (trace.named.has(pkg) && !dependencies[pkg]) optionalDependencies[pkg] = pinned(pkg, range);
  }
  return {
    name: AGENT_PACKAGE,
    version: root.version,
    description: `The ${root.name} device agent: camera -> CNN head -> codec -> MQTT (run: splitfleet-agent --help)`,
    license: root.license,
    type: 'module',
    engines: root.engines,
    bin: { [AGENT_PACKAGE]: `app/dist/${AGENT_ENTRY}` },
    dependencies,
    ...(Object.keys(optionalDependencies).length ? { optionalDependencies } : {}),
  };
}

async function sizeOf(path: string): Promise<number> {
  return (await stat(path)).size;
}

export interface PackResult {
  tgz: string;
  stage: string;
  modules: number;
  dependencies: Record<string, string>;
  optionalDependencies: Record<string, string>;
  bytes: number;
}

/** Stage the agent package in `stage` and `npm pack` it into `out`. */
export async function packAgent(opts: {
  dist?: string;
  out: string;
  stage?: string;
}): Promise<PackResult> {
  const dist = opts.dist ?? join(PROJECT_ROOT, 'dist');
  const stage = opts.stage ?? join(PROJECT_ROOT, '.cache', 'pack', AGENT_PACKAGE);
  const root = JSON.parse(
    await readFile(join(PROJECT_ROOT, 'package.json'), 'utf8'),
  ) as PackageJson;
  const lock = JSON.parse(
    await readFile(join(PROJECT_ROOT, 'package-lock.json'), 'utf8'),
  ) as Lockfile;
  const trace = await traceAgent(
    dist,
    AGENT_ENTRY,
    new Set(Object.keys(root.optionalDependencies ?? {})),
  );
  const manifest = agentManifest(root, lock, trace);

  await rm(stage, { recursive: true, force: true });
  await mkdir(join(stage, 'app'), { recursive: true });
  for (const mod of trace.modules) {
    await mkdir(dirname(join(stage, 'app', 'dist', mod)), { recursive: true });
    await cp(join(dist, mod), join(stage, 'app', 'dist', mod));
  }
  for (const asset of ASSETS) {
    await cp(join(PROJECT_ROOT, asset), join(stage, 'app', asset), { recursive: true });
  }
  const marker = {
    name: root.name,
    version: root.version,
    private: true,
    type: 'module',
    description: `The part of ${root.name} the device agent runs; core/paths.ts finds its files from here`,
  };
  await writeFile(join(stage, 'app', 'package.json'), JSON.stringify(marker, null, 2) + '\n');
  await writeFile(join(stage, 'package.json'), JSON.stringify(manifest, null, 2) + '\n');
  await writeFile(
    join(stage, 'README.md'),
    [
      `# ${AGENT_PACKAGE}`,
      '',
      `The ${root.name} device agent on its own (\`npm run pack:agent\` in the ${root.name}`,
      'project made this package). `splitfleet-agent [options]` takes the flags of',
      '`splitfleet agent`; `splitfleet-agent --help` lists them. On a Raspberry Pi or a',
      'Jetson, deploy/install.sh installs it as a systemd service.',
      '',
    ].join('\n'),
  );

  await mkdir(opts.out, { recursive: true });
  const r = spawnSync('npm', ['pack', '--json', '--pack-destination', resolve(opts.out)], {
    cwd: stage,
    encoding: 'utf8',
    env: { ...process.env, npm_config_fund: 'false', npm_config_audit: 'false' },
  });
  if (r.status !== 0) throw new Error(`npm pack failed: ${r.stderr || r.error?.message}`);
  const [packed] = JSON.parse(r.stdout) as { filename: string }[];
  if (!packed) throw new Error('npm pack wrote nothing');
  const tgz = join(resolve(opts.out), packed.filename);
  return {
    tgz,
    stage,
    modules: trace.modules.length,
    dependencies: manifest.dependencies as Record<string, string>,
    optionalDependencies: (manifest.optionalDependencies ?? {}) as Record<string, string>,
    bytes: await sizeOf(tgz),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dist: { type: 'string' },
      out: { type: 'string', default: process.cwd() },
      stage: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const r = await packAgent({ dist: values.dist, out: values.out, stage: values.stage });
  if (values.json) {
    process.stdout.write(JSON.stringify(r) + '\n');
    return;
  }
  process.stdout.write(
    `${relative(process.cwd(), r.tgz) || r.tgz}: ${(r.bytes / 1e6).toFixed(1)} MB, ` +
      `${r.modules} modules\n` +
      `dependencies: ${Object.keys(r.dependencies).join(', ')}\n` +
      (Object.keys(r.optionalDependencies).length
        ? `optional: ${Object.keys(r.optionalDependencies).join(', ')}\n`
        : ''),
  );
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  await main();
}
