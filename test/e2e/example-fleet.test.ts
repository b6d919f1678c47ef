/**
 * Acceptance: the shipped example fleet, as a user runs it. `splitfleet edge --fleet-file
 * fleet-config/example.fleet.yaml` with no model flag serves every model the file names;
 * an agent process for each device of the file (each with its own login) gets results,
 * or refuses its config with a reason the operator sees (lab-pi: the file names a source
 * the agent did not start with); `fleet status --fleet demo --json` lists the edge and
 * every device with the config wanted and running; `fleet models` and `fleet set` find the
 * edge's fleet by themselves; an operator change is kept beside the fleet file and applied;
 * a broken edit of the file is logged and changes nothing.
 */
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_MODEL, resolveBundle } from '../../core/model/zoo.js';
import { PROJECT_ROOT } from '../../core/paths.js';
import type { Manifest } from '../../core/model/manifest.js';
import { hashPassword, type CredentialFile } from '../../edge-broker/auth.js';
import { parseDevicesReport } from '../../cli/commands/fleet-status.js';
import type { DeviceView } from '../../edge-broker/fleet/monitor.js';
import { lastJson, runCli } from '../helpers/cli.js';
import { freePort } from '../helpers/net.js';
import { waitFor } from '../helpers/wait.js';

const DEVICES = ['bench-jetson', 'gate-01', 'gate-02', 'lab-pi'];
const PASSWORD = 'example-fleet-test-password';

/** A `splitfleet` process from source; its output collected as it comes. */
function cli(args: string[]): { p: ChildProcess; out: () => string; err: () => string } {
  const p = spawn(
    process.execPath,
    ['--import', 'tsx', join(PROJECT_ROOT, 'cli', 'main.ts'), ...args],
    {
      cwd: PROJECT_ROOT,
      env: {
        ...process.env,
        LOG_LEVEL: 'warn',
        SPLITFLEET_LOG_FILE: '',
        SPLITFLEET_LOG_FORMAT: 'json',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return { p, out: () => out, err: () => err };
}

/** Poll `cond` until it holds (bounded, so a broken run ends: 180 s on a loaded box). */
async function until(cond: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + 180_000;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 200));
  }
}

function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    p.once('close', () => resolve());
    p.kill('SIGTERM');
  });
}

const pointsOf = (m: Manifest) => (m.kind === 'codec' ? m.codec.points.map((p) => p.index) : []);

test('the example fleet runs from its file alone: results or an explained refusal for every device, all in fleet status', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sf-example-'));
  const procs: ChildProcess[] = [];
  try {
    // the fleet file where the edge may keep operator overrides beside it
    const fleetFile = join(dir, 'example.fleet.yaml');
    await copyFile(join(PROJECT_ROOT, 'fleet-config', 'example.fleet.yaml'), fleetFile);
    // a login per device of the fleet (the file names gate-01's and gate-02's) and an operator
    const hash = await hashPassword(PASSWORD);
    const users: CredentialFile['users'] = { ops: { role: 'operator', fleet: null, hash } };
    for (const d of DEVICES) users[d] = { role: 'device', fleet: 'demo', hash };
    const credentials = join(dir, 'credentials.json');
    await writeFile(credentials, JSON.stringify({ version: 1, users } satisfies CredentialFile));

    const [port, metricsPort] = [await freePort(), await freePort()];
    const edge = cli([
      'edge',
      '--fleet-file',
      fleetFile,
      '--credentials',
      credentials,
      '--port',
      String(port),
      '--no-ws',
      '--metrics-port',
      String(metricsPort),
      '--workers',
      '1',
      '--json',
    ]);
    procs.push(edge.p);
    await waitFor(() => edge.out().includes('"mqtt"') || edge.p.exitCode !== null, 120_000);
    t.is(edge.p.exitCode, null, edge.err());
    const url = `mqtt://127.0.0.1:${port}`;
    for (const d of DEVICES) {
      // each device as it is installed: its own login, the shipped sample as its source
      const agent = cli(
        ['agent', '--device', d, '--fleet', 'demo', '--url', url, '--loop'].concat([
          '--username',
          d,
          '--password',
          PASSWORD,
        ]),
      );
      procs.push(agent.p);
    }
    const table = async (): Promise<DeviceView[]> => {
      const r = await fetch(`http://127.0.0.1:${metricsPort}/devices`);
      return parseDevicesReport(await r.text())?.devices ?? [];
    };
    // every device gets results or refuses its config, and says so
    const settled = (v: DeviceView) =>
      v.running !== null &&
      (v.refused !== null || (v.results >= 3 && v.running.configId === v.wanted?.configId));
    let rows: DeviceView[] = [];
    await until(async () => {
      rows = await table();
      const exited = procs.find((p) => p.exitCode !== null);
      if (exited) throw new Error(`a process ended early: ${exited.spawnargs.join(' ')}`);
      return rows.length === DEVICES.length && rows.every(settled);
    });
    const row = (d: string) => rows.find((r) => r.device === d)!;
    t.deepEqual(
      rows.map((r) => r.device),
      DEVICES,
    );
    for (const d of ['gate-01', 'gate-02', 'bench-jetson']) {
      t.like(row(d), { state: 'online', inFleetFile: true, refused: null }, d);
      t.is(row(d).errors['unknown-model'], undefined, d);
    }
    // the learned codec's bundle is served from the file alone, no --model
    t.like(row('gate-01').running, { codec: 'splitfleet', point: 0 });
    t.like(row('gate-02').wanted!.settings, { codec: 'splitfleet', point: 0, fps: 10 });
    t.like(row('bench-jetson').running, { codec: 'split-q', point: 2 });
    // lab-pi's file source is not the one its agent started with: refused, with the reason,
    // and it runs its start-up settings meanwhile
    t.regex(row('lab-pi').refused!, /source "\/data\/images.tar.gz" differs from "sample"/);
    t.like(row('lab-pi').wanted!.settings, { codec: 'jpeg-scan', point: 1 });
    t.like(row('lab-pi').running, { configId: null, codec: 'split-q' });
    await until(() => Promise.resolve(/device refused its config/.test(edge.err())));
    t.regex(edge.err(), /lab-pi/);

    // the operator's view, over MQTT with the operator's login
    const login = ['--url', url, '--username', 'ops', '--password', PASSWORD];
    const status = await runCli(['fleet', 'status', '--fleet', 'demo', '--json', ...login]);
    t.is(status.code, 0, status.stderr);
    const seen = lastJson(status.stdout) as { edges: string[]; devices: DeviceView[] };
    t.deepEqual(seen.edges, ['edge-1']);
    t.deepEqual(
      seen.devices.map((d) => d.device),
      DEVICES,
    );
    for (const d of seen.devices) {
      t.truthy(d.wanted, d.device);
      t.truthy(d.running, d.device);
    }
    // no --fleet: the edge's own fleet is found
    const models = await runCli(['fleet', 'models', '--json', ...login]);
    t.is(models.code, 0, models.stderr);
    const refs = (JSON.parse(models.stdout) as { ref: string }[]).map((m) => m.ref).sort();
    // the backbone and the newest splitfleet bundle (gate-cameras' codec)
    const sf = (await resolveBundle(DEFAULT_MODEL, { codec: 'splitfleet', part: 'device' }))
      .manifest;
    t.deepEqual(refs, ['resnet9w05-cifar10@2', `${sf.name}@${sf.version}`]);

    // an operator change, checked, kept beside the fleet file and applied by the device
    const set = await runCli([
      'fleet',
      'set',
      '--device',
      'gate-02',
      '--point',
      '1',
      '--json',
      ...login,
    ]);
    t.is(set.code, 0, set.stderr);
    const persisted = `${fleetFile}.overrides.json`;
    t.deepEqual(JSON.parse(set.stdout), { devices: ['gate-02'], persisted });
    t.deepEqual(JSON.parse(await readFile(persisted, 'utf8')).devices, { 'gate-02': { point: 1 } });
    await until(async () => {
      const g = (await table()).find((r) => r.device === 'gate-02');
      return g?.running?.point === 1 && g.running.configId === g.wanted?.configId;
    });
    const refused = await runCli(['fleet', 'set', '--device', 'gate-02', '--point', '9', ...login]);
    t.is(refused.code, 1);
    t.true(
      refused.stderr.includes(
        `codec splitfleet has no operating point 9 (has ${pointsOf(sf).join(', ')})`,
      ),
      refused.stderr,
    );

    // a broken edit of the file is logged and the configs in force stay
    const wanted = (await table()).map((r) => r.wanted?.configId);
    await writeFile(
      fleetFile,
      (await readFile(fleetFile, 'utf8')).replace('point: 2 # 4-bit', 'point: 9'),
    );
    await until(() => Promise.resolve(/fleet file .* not applied/.test(edge.err())));
    t.regex(
      edge.err(),
      /defaults\.point: codec split-q has no operating point 9 \(has 0, 1, 2, 3\)/,
    );
    t.deepEqual(
      (await table()).map((r) => r.wanted?.configId),
      wanted,
    );
  } finally {
    await Promise.all(procs.map(stop));
    await rm(dir, { recursive: true, force: true });
  }
});
