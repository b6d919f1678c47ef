/**
 * The device agent's resource use: for each shipped model (and its codec), a real agent
 * process (`node dist/cli/main.js agent`, ONNX engine, the shipped sample looped) sends to
 * a real edge process for S seconds at F frames/s; its resident memory (VmRSS) and CPU
 * time (utime + stime) come from /proc/<pid>/status and /proc/<pid>/stat, frames are
 * counted as their results arrive. Needs `npm run build` first.
 *
 *   node --import tsx scripts/agent-resources.ts [seconds=30] [fps=10] [engine=onnx]
 *
 * Prints a table and one JSON line. Goal (issue 8): RSS under 150 MB.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import Table from 'cli-table3';
import { connectAsync } from 'mqtt';
import { rssMiB, startEdgeProcess } from '../bench/connections.js';
import { PROJECT_ROOT } from '../core/paths.js';
import { deviceTopic, parseTopic } from '../core/wire/topics.js';
import { round } from '../core/util/stats.js';

const [seconds = 30, fps = 10] = process.argv.slice(2, 4).map(Number);
const engine = process.argv[4] ?? 'onnx';
const WARMUP_MS = 5000;
const FLEET = 'res';
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

const RUNS = [
  { model: 'resnet9w05-cifar10', codec: 'split-q', point: 2 },
  { model: 'resnet9w05-cifar10', codec: 'splitfleet', point: 0 },
  { model: 'resnet9w05-cifar10', codec: 'frankensplit', point: 0 },
  { model: 'resnet9w05-cifar10', codec: 'aecnn', point: 3 },
  { model: 'resnet9w05-cifar10', codec: 'bottlenetpp', point: 0 },
];

/** SPLITFLEET_AS_DEPLOYED=0 measures a bare `node`; by default the agent runs with the
 * environment the systemd unit gives it (its `Environment=` lines: V8 and malloc
 * settings that bound memory). */
const asDeployed = process.env.SPLITFLEET_AS_DEPLOYED !== '0';
async function unitEnvironment(): Promise<Record<string, string>> {
  const unit = await readFile(join(PROJECT_ROOT, 'deploy', 'splitfleet-agent.service'), 'utf8');
  const env: Record<string, string> = {};
  for (const m of unit.matchAll(/^Environment=(.+)$/gm)) {
    for (const kv of m[1]!.split(' ')) {
      const i = kv.indexOf('=');
      if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
    }
  }
  return env;
}

/** CPU seconds (user + system) of a process so far. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // fields after the command name (which may hold spaces) start at ") "
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime, stime (fields 14, 15)
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const { child: edge, mqtt: url } = await startEdgeProcess(
  [
    ...['--model', 'resnet9w05-cifar10', 'splitfleet-cifar10', 'frankensplit-cifar10'],
    ...['aecnn-cifar10', 'bottlenetpp-cifar10', '--workers', '1', '--no-metrics'],
    ...['--fleet', FLEET],
  ],
  [],
  { built: true }, // memory is measured: as deployed, not through tsx
);
const watcher = await connectAsync(url, { protocolVersion: 4 });
const results = new Map<string, number>();
watcher.on('message', (topic) => {
  const t = parseTopic(topic);
  if (t?.kind !== 'device') return;
  results.set(t.deviceId, (results.get(t.deviceId) ?? 0) + 1);
});

interface Row {
  model: string;
  codec: string;
  point: number;
  frames: number;
  fps: number;
  rssStartMiB: number;
  rssMaxMiB: number;
  rssEndMiB: number;
  cpuMsPerFrame: number;
  cpuShare: number;
}
const rows: Row[] = [];
try {
  for (const r of RUNS) {
    const device = `res-${r.codec}`;
    await watcher.subscribeAsync(deviceTopic(FLEET, device, 'result'), { qos: 0 });
    const agent: ChildProcess = spawn(
      process.execPath,
      [
        join(PROJECT_ROOT, 'dist', 'cli', 'main.js'),
        'agent',
        ...['--device', device, '--fleet', FLEET, '--url', url, '--model', r.model],
        ...['--codec', r.codec, '--point', String(r.point), '--engine', engine],
        ...['--source', 'sample', '--loop', '--fps', String(fps), '--json'],
      ],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, ...(asDeployed ? await unitEnvironment() : {}), LOG_LEVEL: 'warn' },
      },
    );
    let err = '';
    agent.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
    const pid = agent.pid!;
    await sleep(WARMUP_MS);
    if (agent.exitCode !== null) throw new Error(`agent ${device} exited: ${err}`);
    const rssStart = await rssMiB(pid);
    const cpu0 = await cpuSeconds(pid);
    const n0 = results.get(device) ?? 0;
    const t0 = performance.now();
    let rssMax = rssStart;
    while (performance.now() - t0 < seconds * 1000) {
      await sleep(1000);
      rssMax = Math.max(rssMax, await rssMiB(pid));
    }
    const cpu1 = await cpuSeconds(pid);
    const frames = (results.get(device) ?? 0) - n0;
    const elapsed = (performance.now() - t0) / 1000;
    const rssEnd = await rssMiB(pid);
    agent.kill('SIGTERM');
    await new Promise((res) => agent.once('exit', res));
    rows.push({
      ...r,
      frames,
      fps: round(frames / elapsed, 2),
      rssStartMiB: rssStart,
      rssMaxMiB: rssMax,
      rssEndMiB: rssEnd,
      cpuMsPerFrame: frames ? round(((cpu1 - cpu0) * 1000) / frames, 2) : NaN,
      cpuShare: round((cpu1 - cpu0) / elapsed, 3),
    });
    process.stderr.write(`${device}: ${JSON.stringify(rows.at(-1))}\n`);
  }
} finally {
  await watcher.endAsync();
  edge.kill('SIGTERM');
}

const table = new Table({
  head: [
    'model',
    'codec',
    'point',
    'frames',
    'fps',
    'RSS start',
    'RSS max',
    'RSS end',
    'CPU ms/frame',
    'CPU share',
  ],
});
for (const r of rows) {
  table.push([
    r.model,
    r.codec,
    r.point,
    r.frames,
    r.fps,
    `${r.rssStartMiB} MiB`,
    `${r.rssMaxMiB} MiB`,
    `${r.rssEndMiB} MiB`,
    r.cpuMsPerFrame,
    r.cpuShare,
  ]);
}
process.stdout.write(table.toString() + '\n');
const maxRss = Math.max(...rows.map((r) => r.rssMaxMiB));
process.stdout.write(
  JSON.stringify({
    seconds,
    fps,
    engine,
    environment: asDeployed ? await unitEnvironment() : 'bare node',
    machine: `${cpus().length} cores, ${cpus()[0]?.model ?? '?'}, node ${process.versions.node}`,
    rows,
    maxRssMiB: maxRss,
    goalRssUnder150MB: maxRss * 1.048576 < 150,
  }) + '\n',
);
