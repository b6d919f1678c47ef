/**
 * What `splitfleet agent` loads: a device runs it, and it must not hold the edge's code
 * (the broker, Node-RED, the Redis clients) or the benchmarks. A module-loading hook
 * (node:module register) records every module the CLI process loads while an agent
 * sends frames to a real edge, then the list is checked.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Edge } from '../../edge-broker/edge.js';
import { PROJECT_ROOT } from '../../core/paths.js';
import { testEdge } from '../helpers/edge.js';

const HOOKS = `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  appendFileSync(process.env.SF_IMPORT_LOG, url + '\\n');
  return next(url, context);
}
`;
const REGISTER = `import { register } from 'node:module';
register('./hooks.mjs', import.meta.url);
`;

/** Modules of the edge and the benchmarks, by their file URL. */
const FORBIDDEN: [string, RegExp][] = [
  ['the broker', /\/node_modules\/(aedes|aedes-[^/]+|mqemitter[^/]*|mqtt-packet-guard)\//],
  ['Node-RED', /\/node_modules\/(node-red|@node-red|@flowfuse)\//],
  ['a Redis client', /\/node_modules\/(ioredis|redis|@redis)\//],
  ['the plots', /\/node_modules\/(vega|vega-lite)\//],
  ['edge code', /\/edge-broker\//],
  ['bench code', /\/bench\//],
  ['another command', /\/cli\/(demo|commands\/(edge|edge-run|worker|fleet[^/]*|models|demo))\.ts$/],
];

let edge: Edge;
let dir: string;
test.before(async () => {
  edge = await testEdge({ edgeId: 'edge-imports' });
  dir = await mkdtemp(join(tmpdir(), 'sf-imports-'));
  await writeFile(join(dir, 'hooks.mjs'), HOOKS);
  await writeFile(join(dir, 'register.mjs'), REGISTER);
});
test.after.always(async () => {
  await edge?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Run the CLI with the recording hook; resolves with its exit code, output and the
 * modules it loaded. */
function recorded(args: string[]): Promise<{ code: number | null; out: string; urls: string[] }> {
  const log = join(dir, `${args[0]}-${Date.now()}.log`);
  const p = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--import',
      pathToFileURL(join(dir, 'register.mjs')).href,
      join(PROJECT_ROOT, 'cli', 'main.ts'),
      ...args,
    ],
    { cwd: PROJECT_ROOT, env: { ...process.env, LOG_LEVEL: 'warn', SF_IMPORT_LOG: log } },
  );
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const timer = setTimeout(() => p.kill('SIGKILL'), 120_000);
  return new Promise((resolve) => {
    p.on('close', (code) => {
      clearTimeout(timer);
      readFile(log, 'utf8').then(
        (text) => resolve({ code, out, urls: text.split('\n').filter(Boolean) }),
        () => resolve({ code, out, urls: [] }),
      );
    });
  });
}

test('splitfleet agent loads neither the edge, Node-RED, Redis clients nor the benchmarks', async (t) => {
  const r = await recorded([
    'agent',
    '--device',
    'imports-1',
    '--fleet',
    'imports',
    '--url',
    edge.url,
    '--frames',
    '3',
    '--fps',
    '0',
    '--json',
  ]);
  t.is(r.code, 0, r.out);
  t.like(JSON.parse(r.out.trim().split('\n').at(-1)!), { sent: 3, results: 3 });
  // the hook saw the agent itself: the list is real
  t.true(
    r.urls.some((u) => u.endsWith('/device-agent/agent.ts')),
    r.urls.join('\n'),
  );
  for (const [what, re] of FORBIDDEN) {
    const hits = r.urls.filter((u) => re.test(u));
    t.deepEqual(hits, [], `${what} loaded`);
  }
});

test('the same check sees edge code where a command loads it (edge --help)', async (t) => {
  const r = await recorded(['edge', '--help']);
  t.is(r.code, 0, r.out);
  t.true(r.urls.some((u) => u.endsWith('/cli/commands/edge.ts')));
  t.true(
    r.urls.some((u) => FORBIDDEN[4]![1].test(u)),
    'edge-broker/ modules seen',
  );
  t.false(
    r.urls.some((u) => u.endsWith('/cli/commands/fleet.ts')),
    'only the command run',
  );
});
