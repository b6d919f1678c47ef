/**
 * `splitfleet fleet credentials` leaves its credential file private (0600) on every
 * write, also when an older copy was readable by others.
 */
import test from 'ava';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.js';

test('fleet credentials forces mode 0600 on an existing world-readable file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sf-cred-'));
  try {
    const file = join(dir, 'creds.json');
    await writeFile(file, JSON.stringify({ version: 1, users: {} }));
    await chmod(file, 0o644);
    const r = await runCli(['fleet', 'credentials', file, '--user', 'ops', '--role', 'operator']);
    t.is(r.code, 0, r.stderr);
    t.is((await stat(file)).mode & 0o777, 0o600);
    const stored = JSON.parse(await readFile(file, 'utf8')) as { users: Record<string, unknown> };
    t.truthy(stored.users.ops);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
