/**
 * Log lines as a user sees them: pretty (time, level name, message, fields) on a terminal
 * (a pseudo-terminal from `script`), coloured unless NO_COLOR; JSON lines (ISO time,
 * level name) when piped or with --log-format json, never an ANSI code in a pipe; refused
 * logins in the edge's log with the reason, one line per address however many.
 */
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { credentialsFor } from '../helpers/credentials.js';
import { deviceClientId } from '../../core/wire/topics.js';
import { cliChild } from './child.js';

const DEMO = [
  'demo',
  '--frames',
  '3',
  '--devices',
  '1',
  '--fps',
  '0',
  '--port',
  '0',
  '--ws-port',
  '0',
];
const PRETTY = /\d\d:\d\d:\d\d\.\d{3}\S* \S*INFO\S* +edge up .*url=mqtt:\/\/127\.0\.0\.1:\d+/;
const ESC = String.fromCharCode(27);
const COLOUR = new RegExp(`${ESC}\\[(2|3\\d)m`);
const ANY_ESC = new RegExp(ESC);
const SGR = new RegExp(`${ESC}\\[[\\d;]*m`, 'g');

test('piped: JSON log lines with ISO time and level names, no ANSI codes', async (t) => {
  const c = cliChild(DEMO);
  const exit = await c.exited;
  t.is(exit.code, 0, c.stderr);
  const lines = c.stderr.split('\n').filter((l) => l.startsWith('{'));
  const up = lines
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((o) => o.msg === 'edge up');
  t.truthy(up, c.stderr);
  t.is(up!.level, 'info');
  t.regex(String(up!.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  t.notRegex(c.stdout + c.stderr, ANY_ESC);
  t.regex(c.stdout, /summary: 3\/3 results/);
});

test('terminal: pretty log lines, coloured', async (t) => {
  const c = cliChild(DEMO, { tty: true });
  const exit = await c.exited;
  t.is(exit.code, 0, c.stdout);
  const out = c.stdout.replace(/\r/g, '');
  const line = out.split('\n').find((l) => l.includes('edge up'));
  t.truthy(line, out);
  t.regex(line!, COLOUR);
  t.regex(line!.replace(SGR, ''), PRETTY);
  t.notRegex(out, /"level"/);
});

test('terminal with NO_COLOR: pretty log lines without colours', async (t) => {
  const c = cliChild(DEMO, { tty: true, env: { NO_COLOR: '1' } });
  const exit = await c.exited;
  t.is(exit.code, 0, c.stdout);
  const line = c.stdout.split(/\r?\n/).find((l) => l.includes('edge up'));
  t.truthy(line, c.stdout);
  t.notRegex(line!, COLOUR);
  t.regex(line!, PRETTY);
});

test('terminal with --log-format json: JSON log lines', async (t) => {
  const c = cliChild(['--log-format', 'json', ...DEMO], { tty: true });
  const exit = await c.exited;
  t.is(exit.code, 0, c.stdout);
  const line = c.stdout.split(/\r?\n/).find((l) => l.includes('edge up'));
  t.truthy(line, c.stdout);
  const o = JSON.parse(line!) as Record<string, unknown>;
  t.is(o.level, 'info');
  t.is(o.msg, 'edge up');
});

test("refused logins are in the edge's log with the reason, one line per address", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sf-logins-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'creds.json');
  await writeFile(file, JSON.stringify(await credentialsFor({ cam1: 'device' }, 'right-pw')));
  const c = cliChild([
    'edge',
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--no-ws',
    '--no-metrics',
    '--credentials',
    file,
    '--json',
  ]);
  t.teardown(() => c.signal('SIGKILL'));
  const [up] = await c.waitFor(/^\{"edge".*\}$/m);
  const url = (JSON.parse(up!) as { mqtt: string }).mqtt;
  const attempts = 4;
  for (let i = 0; i < attempts; i++) {
    const refused = await connectAsync(url, {
      username: 'cam1',
      password: 'wrong',
      clientId: deviceClientId('f', 'cam1'),
      reconnectPeriod: 0,
      connectTimeout: 60_000,
    }).then(
      (cl) => (cl.end(true), false),
      () => true,
    );
    t.true(refused, `attempt ${i + 1} refused`);
  }
  c.signal('SIGINT');
  await c.exited;
  const lines = c.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((o) => o.msg === 'login refused');
  t.is(lines.length, 1, c.stderr);
  t.is(lines[0]!.user, 'cam1');
  t.is(lines[0]!.why, 'wrong user name or password');
  t.regex(String(lines[0]!.from), /127\.0\.0\.1/);
});
