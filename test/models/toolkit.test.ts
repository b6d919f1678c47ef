/** Runs the Python toolkit's own unit tests (loader formats) from the one test command. */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../core/paths.js';

const PYTHON = process.env.SPLITFLEET_PYTHON ?? '/usr/bin/python3';

test('models/ toolkit unit tests pass', (t) => {
  const r = spawnSync(PYTHON, ['-m', 'unittest', 'discover', '-s', 'tests', '-t', '.'], {
    cwd: join(PROJECT_ROOT, 'models'),
    encoding: 'utf8',
    timeout: 120_000,
  });
  t.log((r.stderr ?? '').trim().split('\n').slice(-3).join('\n'));
  t.is(r.status, 0, r.stderr || String(r.error));
});
