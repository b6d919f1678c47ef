/**
 * deploy/: the install script is shellcheck-clean and its --dry-run prints the plan
 * (and changes nothing); the systemd unit passes `systemd-analyze verify` where systemd
 * is installed (else that check is skipped, with the reason in the log). What the agent
 * package holds: test/device/package.test.ts.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../core/paths.js';

const DEPLOY = join(PROJECT_ROOT, 'deploy');
const INSTALL = join(DEPLOY, 'install.sh');
const UNIT = join(DEPLOY, 'splitfleet-agent.service');

function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

test('install.sh is shellcheck-clean', (t) => {
  if (!which('shellcheck')) return t.fail('shellcheck is not installed');
  const r = spawnSync('shellcheck', ['--severity=style', INSTALL], { encoding: 'utf8' });
  t.is(r.status, 0, r.stdout + r.stderr);
});

test('the unit passes systemd-analyze verify', async (t) => {
  const analyze = which('systemd-analyze');
  if (!analyze) {
    t.log('skipped: systemd-analyze is not installed here');
    return t.pass();
  }
  // as install.sh writes it: ExecStart points at an installed executable (here: node)
  const dir = await mkdtemp(join(tmpdir(), 'sf-unit-'));
  try {
    const unit = (await readFile(UNIT, 'utf8')).replace(
      '/usr/local/bin/splitfleet-agent',
      process.execPath,
    );
    t.regex(unit, /^ExecStart=\S+ --config \/etc\/splitfleet\/agent\.yaml --json$/m);
    t.regex(unit, /^Restart=on-failure$/m);
    t.regex(unit, /^User=splitfleet$/m);
    t.regex(unit, /^EnvironmentFile=-\/etc\/splitfleet\/agent\.env$/m);
    t.regex(unit, /^DeviceAllow=char-video4linux rw$/m);
    t.notRegex(unit, /^PrivateDevices=yes/m); // it would hide /dev/video*
    const path = join(dir, 'splitfleet-agent.service');
    await writeFile(path, unit);
    const r = spawnSync(analyze, ['verify', path], { encoding: 'utf8', timeout: 60_000 });
    if (
      r.status !== 0 &&
      /Failed to (connect|initialize)|not been booted|System has not/i.test(r.stderr)
    ) {
      t.log(`skipped: systemd-analyze cannot verify here: ${r.stderr.trim().split('\n')[0]}`);
      return t.pass();
    }
    t.is(r.status, 0, r.stdout + r.stderr);
    t.is(r.stderr.trim(), '', 'no warnings');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('install.sh --dry-run prints the plan and changes nothing', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sf-install-'));
  try {
    const ca = join(dir, 'ca.pem');
    await writeFile(ca, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const r = spawnSync(
      'bash',
      [
        INSTALL,
        '--dry-run',
        '--package',
        './splitfleet-agent-0.1.0.tgz',
        '--device',
        'gate-01',
        '--fleet',
        'demo',
        '--url',
        'mqtts://edge.local:8883',
        '--ca',
        ca,
        '--password-stdin',
      ],
      { encoding: 'utf8', input: 's3cret-pw\n', timeout: 60_000 },
    );
    t.is(r.status, 0, r.stderr);
    const out = r.stdout;
    for (const s of [
      '==> checking Node.js',
      'would run: npm install -g --omit=dev --no-fund --no-audit ./splitfleet-agent-0.1.0.tgz',
      'bin/splitfleet-agent',
      'would write /etc/splitfleet/agent.yaml (mode 0640, owner root:splitfleet)',
      '| device: gate-01',
      '| url: mqtts://edge.local:8883',
      'would write /etc/splitfleet/ca.pem (mode 0644, owner root:root)',
      '| -----BEGIN CERTIFICATE-----',
      '| ca: /etc/splitfleet/ca.pem',
      'would write /etc/splitfleet/agent.env (mode 0600, owner root:root)',
      'SPLITFLEET_PASSWORD=********',
      'would write /etc/systemd/system/splitfleet-agent.service',
      'would run: systemctl enable --now splitfleet-agent',
    ]) {
      t.true(out.includes(s), `plan lacks ${JSON.stringify(s)}`);
    }
    t.regex(out, /would run: (useradd --system .*splitfleet|usermod -a -G video splitfleet)/);
    t.false(out.includes('s3cret-pw'), 'the password is never printed');
    t.false(existsSync('/etc/systemd/system/splitfleet-agent.service.tmp'));
    // a bad call says why
    const bad = spawnSync('bash', [INSTALL, '--dry-run', '--url', 'mqtt://x'], {
      encoding: 'utf8',
    });
    t.is(bad.status, 1);
    t.regex(bad.stderr, /--device ID/);
    const noCa = spawnSync(
      'bash',
      [INSTALL, '--dry-run', '--device', 'gate-01', '--url', 'mqtt://x', '--ca', join(dir, 'no')],
      { encoding: 'utf8' },
    );
    t.is(noCa.status, 1);
    t.regex(noCa.stderr, /cannot read .*no/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
