/**
 * `splitfleet bench latency`: end-to-end latency, accuracy, bytes on the wire and the
 * highest sustainable frame rate of one device over shaped links (issue 7).
 *
 * The device (`splitfleet agent`) and the edge (`splitfleet edge`, plus the input-offload
 * worker for image frames: edge-broker/image-offload.ts) run in two network namespaces
 * of their own, joined by one link per profile (rate, one-way delay and random loss,
 * each direction). The link is tc netem on a veth pair where the kernel has netem, and
 * otherwise scripts/linkemu.py: a userspace emulator that owns a TUN device in each
 * namespace and forwards IP packets through a bounded queue, a serializer at the rate,
 * random loss and a delay line, so TCP sees a real bottleneck, delay and loss. Bytes on
 * the wire are IP packets (IP, TCP and MQTT headers, ACKs and retransmissions included),
 * counted by the emulator (or the veth's counters less 14 B of Ethernet header per packet).
 *
 * Methods: `local` (the whole model on the device, no network: measured in this process,
 * one thread), full input offload with the input codecs of `bench rate` (jpeg, jpeg-scan
 * = shared-table JPEG, webp; the edge runs the whole model) and the split codecs at
 * several operating points. For each (profile, method): p50/p99 latency at 10 frames/s,
 * accuracy (result labels against the sample's labels, over the frames of that run), wire
 * bytes per frame both ways, and the highest frame rate that keeps the queue from growing
 * (searched, a bounded number of probes).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import Table from 'cli-table3';
import type { TopLevelSpec } from 'vega-lite';
import { readSamples, type Sample } from '../../core/data/cifar.js';
import { onnxEngine } from '../../core/engine/onnx.js';
import { decodeImage, preprocess } from '../../core/image/image.js';
import type { Bundle } from '../../core/model/bundle.js';
import { PROJECT_ROOT } from '../../core/paths.js';
import { percentile, round } from '../../core/util/stats.js';
import { startEdgeProcess } from '../connections.js';
import { specToSvg } from '../plot.js';
import { background } from '../../core/util/log.js';

export interface LinkProfile {
  name: string;
  /** Rate each direction, kbit/s (downKbps: the edge -> device direction, when it differs). */
  kbps: number;
  downKbps?: number;
  /** One-way delay each direction, ms. */
  delayMs: number;
  /** Random loss probability each direction. */
  loss: number;
}

export const DEFAULT_PROFILES: LinkProfile[] = [
  { name: '10mbit-20ms', kbps: 10_000, delayMs: 20, loss: 0 },
  { name: '1mbit-50ms', kbps: 1_000, delayMs: 50, loss: 0 },
  { name: '250kbit-100ms-1%', kbps: 250, delayMs: 100, loss: 0.01 },
];

/** `name:kbps:delayMs[:loss[:downKbps]]`, e.g. `250kbit:250:100:0.01`. */
export function parseProfile(s: string): LinkProfile {
  const [name, kbps, delay, loss, down] = s.split(':');
  const n = (x: string | undefined, d: number) => (x === undefined || x === '' ? d : Number(x));
  const p: LinkProfile = {
    name: name ?? '',
    kbps: n(kbps, NaN),
    delayMs: n(delay, 0),
    loss: n(loss, 0),
    ...(down ? { downKbps: Number(down) } : {}),
  };
  if (!p.name || !(p.kbps > 0) || !(p.delayMs >= 0) || !(p.loss >= 0 && p.loss < 1)) {
    throw new Error(`profile ${JSON.stringify(s)}: want name:kbps:delayMs[:loss[:downKbps]]`);
  }
  return p;
}

export type MethodKind = 'local' | 'offload' | 'split';

export interface LatencyMethod {
  /** e.g. "webp q75", "splitfleet lam=1.0". */
  name: string;
  kind: MethodKind;
  codec: string;
  point: number;
  /** The model the agent runs (a backbone for local/offload, the codec's bundle for split). */
  model: string;
}

const BACKBONE = 'resnet9w05-cifar10';

/** `bench rate`'s input codecs and points by label; learned codecs by their bundle's labels. */
export const DEFAULT_METHODS: LatencyMethod[] = [
  { name: 'local', kind: 'local', codec: 'none', point: 0, model: BACKBONE },
  { name: 'jpeg q75', kind: 'offload', codec: 'jpeg', point: 2, model: BACKBONE },
  { name: 'jpeg-scan q75', kind: 'offload', codec: 'jpeg-scan', point: 1, model: BACKBONE },
  { name: 'webp q75', kind: 'offload', codec: 'webp', point: 1, model: BACKBONE },
  { name: 'webp q25', kind: 'offload', codec: 'webp', point: 3, model: BACKBONE },
  { name: 'splitfleet lam=1.0', kind: 'split', codec: 'splitfleet', point: 0, model: BACKBONE },
  { name: 'splitfleet lam=0.1', kind: 'split', codec: 'splitfleet', point: 2, model: BACKBONE },
  { name: 'frankensplit lam=0.1', kind: 'split', codec: 'frankensplit', point: 1, model: BACKBONE },
];

/** One agent run at a fixed frame rate. */
export interface Probe {
  fps: number;
  frames: number;
  results: number;
  errors: number;
  /** Every frame answered, drained in time, no upward latency trend, and no standing queue
   * (p50 within 2x the base rate's p50 + 50 ms). */
  sustained: boolean;
  why: string;
  p50: number | null;
  p99: number | null;
  /** Median latency of the second and the last quarter of the answers (trend). */
  firstQuarterP50: number | null;
  lastQuarterP50: number | null;
  accuracy: number | null;
  /** IP bytes per frame sent, device -> edge and edge -> device. */
  wireUpBytes: number;
  wireDownBytes: number;
  /** IP packets per frame sent, each way. */
  wireUpPackets: number;
  wireDownPackets: number;
  frameBytes: number;
  lostPackets: number;
}

export interface LatencyRow {
  profile: string;
  method: string;
  kind: MethodKind;
  codec: string;
  point: number;
  /** At 10 frames/s (or --fps). */
  p50Ms: number | null;
  p99Ms: number | null;
  accuracy: number | null;
  accuracyFrames: number;
  frameBytes: number;
  wireUpBytesPerFrame: number;
  wireDownBytesPerFrame: number;
  /** Highest probed rate that held, and the lowest that did not (null: none failed). */
  maxFps: number;
  failedFps: number | null;
  /** maxFps is the search's ceiling (--max-fps), not a limit found. */
  capped: boolean;
  probes: Probe[];
}

export interface Crossover {
  between: [string, string];
  /** Link rate (kbit/s) where their p50 at the base rate cross (log-linear interpolation). */
  kbps: number;
  below: string;
}

export interface LatencyReport {
  date: string;
  machine: string;
  shaper: 'netem' | 'linkemu';
  fps: number;
  probeSeconds: number;
  quick: boolean;
  profiles: LinkProfile[];
  rows: LatencyRow[];
  crossovers: Crossover[];
  goal: {
    profile: string;
    bestOffload: { method: string; maxFps: number; p50Ms: number | null } | null;
    bestSplit: { method: string; maxFps: number; p50Ms: number | null } | null;
    fpsRatio: number | null;
    fpsGoalMet: boolean | null;
    p50GoalMet: boolean | null;
  } | null;
}

export interface LatencyOptions {
  profiles?: LinkProfile[];
  methods?: LatencyMethod[];
  /** Frame rate of the latency runs (10). */
  fps?: number;
  /** Seconds of each run (latency run and each probe). */
  seconds?: number;
  /** Probes of the max-rate search per (profile, method). */
  probes?: number;
  maxFps?: number;
  /** The shipped sample unless given. */
  source?: string;
  /** Force the userspace emulator even where netem works. */
  shaper?: 'auto' | 'netem' | 'linkemu';
  quick?: boolean;
  log?: (line: string) => void;
}

const PY = process.env.SPLITFLEET_PYTHON ?? '/usr/bin/python3';
const CLI = join(PROJECT_ROOT, 'dist', 'cli', 'main.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => (xs.length ? percentile(xs, 50) : null);

function sh(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

/** Why network namespaces cannot be made here, or null when they can. */
export function namespacesUnavailable(): string | null {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'needs root (CAP_NET_ADMIN) for network namespaces';
  const ns = `sf-probe-${process.pid}`;
  const r = sh('ip', ['netns', 'add', ns]);
  if (!r.ok) return `ip netns add failed: ${r.out.trim()}`;
  sh('ip', ['netns', 'del', ns]);
  return null;
}

/** Whether tc netem works in a scratch namespace. */
function netemWorks(): boolean {
  const ns = `sf-netem-${process.pid}`;
  if (!sh('ip', ['netns', 'add', ns]).ok) return false;
  try {
    return (
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']).ok &&
      sh('tc', ['-n', ns, 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms']).ok
    );
  } finally {
    sh('ip', ['netns', 'del', ns]);
  }
}

interface WireCount {
  up: { bytes: number; packets: number; lost: number };
  down: { bytes: number; packets: number; lost: number };
}

/** The link between the two namespaces: reshaped per profile, counted per run. */
interface Link {
  kind: 'netem' | 'linkemu';
  shape(p: LinkProfile): Promise<void>;
  reset(): Promise<void>;
  count(): Promise<WireCount>;
  close(): Promise<void>;
}

const DEV_IP = '10.204.0.1';
const EDGE_IP = '10.204.0.2';

async function linkemu(devNs: string, edgeNs: string, p: LinkProfile): Promise<Link> {
  const child = spawn(
    PY,
    [
      join(PROJECT_ROOT, 'scripts', 'linkemu.py'),
      '--ns-a',
      devNs,
      '--ns-b',
      edgeNs,
      '--addr-a',
      DEV_IP,
      '--addr-b',
      EDGE_IP,
      '--rate',
      String(p.kbps * 1000),
      '--delay-ms',
      String(p.delayMs),
      '--loss',
      String(p.loss),
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const lines = createInterface({ input: child.stdout! });
  const waiting: ((l: string) => void)[] = [];
  const queued: string[] = [];
  lines.on('line', (l) => {
    const w = waiting.shift();
    if (w) w(l);
    else queued.push(l);
  });
  const next = (ms = 10_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`linkemu did not answer: ${err}`)), ms);
      const take = (l: string) => {
        clearTimeout(t);
        try {
          resolve(JSON.parse(l) as Record<string, unknown>);
        } catch {
          reject(new Error(`linkemu: ${l}`));
        }
      };
      const q = queued.shift();
      if (q !== undefined) take(q);
      else waiting.push(take);
    });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const ready = await Promise.race([
    next(),
    exited.then(() => Promise.reject(new Error(`linkemu exited: ${err.trim()}`))),
  ]);
  if (!ready.ready) throw new Error(`linkemu: ${JSON.stringify(ready)}`);
  const ask = async (cmd: string) => {
    child.stdin!.write(`${cmd}\n`);
    return next();
  };
  type Dir = { bytes: number; packets: number; lost: number };
  return {
    kind: 'linkemu',
    shape: async (q) => {
      // the queue: 0.5 s of the uplink's rate, at least 32 KiB (linkemu's default)
      const queue = Math.max(32768, Math.round((q.kbps * 1000) / 8 / 2));
      const down = (q.downKbps ?? q.kbps) * 1000;
      await ask(
        `set rate=${q.kbps * 1000} ratedown=${down} delay=${q.delayMs} loss=${q.loss} queue=${queue}`,
      );
    },
    reset: async () => void (await ask('reset')),
    count: async () => {
      const s = (await ask('stats')) as { up: Dir; down: Dir };
      const pick = (d: Dir) => ({ bytes: d.bytes, packets: d.packets, lost: d.lost });
      return { up: pick(s.up), down: pick(s.down) };
    },
    close: async () => {
      child.stdin!.end('quit\n');
      await Promise.race([exited, sleep(3000)]);
      child.kill('SIGKILL');
    },
  };
}

/** veth + tc netem on both ends (where the kernel has netem). Untested here: this
 * machine's kernel has no sch_netem. */
async function netemLink(devNs: string, edgeNs: string): Promise<Link> {
  const [vd, ve] = ['sfld0', 'sfle0'];
  const run = (args: string[]) => {
    const r = sh('ip', args);
    if (!r.ok) throw new Error(`ip ${args.join(' ')}: ${r.out}`);
  };
  run(['link', 'add', vd, 'netns', devNs, 'type', 'veth', 'peer', 'name', ve, 'netns', edgeNs]);
  for (const [ns, dev, me] of [
    [devNs, vd, DEV_IP],
    [edgeNs, ve, EDGE_IP],
  ] as const) {
    run(['-n', ns, 'link', 'set', 'lo', 'up']);
    run(['-n', ns, 'addr', 'add', `${me}/30`, 'dev', dev]);
    run(['-n', ns, 'link', 'set', dev, 'up']);
  }
  let base: WireCount | null = null;
  const read = (): WireCount => {
    const stat = (ns: string, dev: string) => {
      const j = JSON.parse(sh('ip', ['-n', ns, '-s', '-j', 'link', 'show', 'dev', dev]).out) as {
        stats64: { tx: { bytes: number; packets: number; dropped: number } };
      }[];
      const tx = j[0]!.stats64.tx;
      // IP bytes: less the 14 B Ethernet header of each packet
      return { bytes: tx.bytes - 14 * tx.packets, packets: tx.packets, lost: tx.dropped };
    };
    return { up: stat(devNs, vd), down: stat(edgeNs, ve) };
  };
  return {
    kind: 'netem',
    shape: async (p) => {
      for (const [ns, dev, kbps] of [
        [devNs, vd, p.kbps],
        [edgeNs, ve, p.downKbps ?? p.kbps],
      ] as const) {
        const limit = Math.max(50, Math.round((kbps * 1000) / 8 / 2 / 1500));
        const args = ['-n', ns, 'qdisc', 'replace', 'dev', dev, 'root', 'netem'];
        args.push('rate', `${kbps}kbit`, 'delay', `${p.delayMs}ms`, 'limit', String(limit));
        if (p.loss > 0) args.push('loss', `${p.loss * 100}%`);
        const r = sh('tc', args);
        if (!r.ok) throw new Error(`tc ${args.join(' ')}: ${r.out}`);
      }
    },
    reset: async () => void (base = read()),
    count: async () => {
      const now = read();
      const b = base ?? {
        up: { bytes: 0, packets: 0, lost: 0 },
        down: { bytes: 0, packets: 0, lost: 0 },
      };
      const d = (k: 'up' | 'down') => ({
        bytes: now[k].bytes - b[k].bytes,
        packets: now[k].packets - b[k].packets,
        lost: now[k].lost - b[k].lost,
      });
      return { up: d('up'), down: d('down') };
    },
    close: async () => undefined,
  };
}

/** Start a long-running child and wait for a stdout line matching `ready`. */
function startChild(cmd: string, args: string[], ready: RegExp): Promise<ChildProcess> {
  const child = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: 'warn' },
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(
      () => reject(new Error(`${args.join(' ')} did not start: ${out}`)),
      60_000,
    );
    const on = (d: Buffer) => {
      out += d.toString();
      if (ready.test(out)) {
        clearTimeout(t);
        child.stdout!.removeAllListeners('data');
        child.stdout!.resume();
        resolve(child);
      }
    };
    child.stdout!.on('data', on);
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${args.join(' ')} exited (${code}): ${out}`));
    });
  });
}

async function stopChild(c: ChildProcess | null | undefined): Promise<void> {
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill('SIGTERM');
  if (await Promise.race([gone.then(() => true), sleep(5000).then(() => false)])) return;
  c.kill('SIGKILL');
  await gone;
}

interface AgentSummary {
  sent: number;
  results: number;
  errors: number;
  lost: number;
  accuracy: number | null;
  bytesPerFrame: number;
}

/** Agents running now (stopped by the bench's cleanup on SIGINT). */
const agents = new Set<ChildProcess>();

/** One agent in the device namespace at `fps` for `frames` frames. */
async function probe(
  ctx: { devNs: string; url: string; link: Link; source: string; profile: LinkProfile },
  m: LatencyMethod,
  fps: number,
  frames: number,
  /** p50 at the base rate: a probe whose p50 is above twice it (+50 ms) has a standing queue. */
  unloadedP50: number | null = null,
): Promise<Probe> {
  await ctx.link.reset();
  const fleet = m.kind === 'offload' ? 'offload' : 'split';
  const args = [
    'netns',
    'exec',
    ctx.devNs,
    process.execPath,
    CLI,
    'agent',
    '--device',
    'bench-latency',
    '--url',
    ctx.url,
    '--fleet',
    fleet,
    '--model',
    m.model,
    '--codec',
    m.codec,
    '--point',
    String(m.point),
    '--source',
    ctx.source,
    '--loop',
    '--fps',
    String(fps),
    '--frames',
    String(frames),
    '--window',
    '100000',
  ];
  const child = spawn('ip', args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: 'error' },
  });
  const lat: number[] = [];
  let firstAt = 0;
  let summary: AgentSummary | null = null;
  let errText = '';
  child.stderr!.on('data', (d: Buffer) => (errText = (errText + d.toString()).slice(-2000)));
  createInterface({ input: child.stdout! }).on('line', (l) => {
    const r = / in ([\d.]+) ms$/.exec(l);
    if (l.startsWith('frame ') && r) {
      if (!lat.length) firstAt = performance.now();
      lat.push(Number(r[1]));
    } else if (l.startsWith('summary: ')) {
      summary = JSON.parse(l.slice(9)) as AgentSummary;
    }
  });
  agents.add(child);
  const exited = new Promise<void>((r) =>
    child.once('exit', () => {
      agents.delete(child);
      r();
    }),
  );
  const started = performance.now();
  const sendSeconds = frames / fps;
  // drained in time: the last answer within this long after the last frame is captured
  const graceMs = 4000 + 10 * ctx.profile.delayMs;
  let killed = false;
  for (;;) {
    const done = await Promise.race([exited.then(() => true), sleep(250).then(() => false)]);
    if (done) break;
    const now = performance.now();
    const deadline = lat.length
      ? firstAt - lat[0]! + sendSeconds * 1000 + graceMs
      : started + 30_000 + sendSeconds * 1000;
    if (now > deadline) {
      killed = true;
      await stopChild(child);
      break;
    }
  }
  const wire = await ctx.link.count();
  const s = summary as AgentSummary | null;
  const sent = s?.sent ?? frames;
  // trend: the second quarter of the answers against the last (the first is warm-up:
  // connection, slow start); a growing queue makes every later frame wait longer
  const q = Math.max(1, Math.floor(lat.length / 4));
  const first = median(lat.slice(q, 2 * q));
  const last = median(lat.slice(-q));
  const trend = first !== null && last !== null && last > first * 1.25 + 30;
  const errors = s?.errors ?? 0;
  const answered = s !== null && s.results === s.sent;
  let why = 'held';
  if (killed) why = `not drained ${round(graceMs / 1000, 1)} s after the last frame`;
  else if (!s) why = `agent failed: ${errText.trim().split('\n').pop() ?? ''}`;
  else if (!answered) why = `${s.results}/${s.sent} answered (${s.errors} errors, ${s.lost} lost)`;
  else if (trend) why = `latency rose (${round(first!)} -> ${round(last!)} ms)`;
  else if (unloadedP50 !== null && median(lat)! > 2 * unloadedP50 + 50) {
    why = `standing queue (p50 ${round(median(lat)!)} ms > 2 x ${round(unloadedP50)} ms + 50)`;
  }
  return {
    fps,
    frames: sent,
    results: lat.length,
    errors,
    sustained: why === 'held',
    why,
    p50: median(lat),
    p99: lat.length ? percentile(lat, 99) : null,
    firstQuarterP50: first,
    lastQuarterP50: last,
    accuracy: s?.accuracy ?? null,
    wireUpBytes: round(wire.up.bytes / Math.max(1, sent), 1),
    wireDownBytes: round(wire.down.bytes / Math.max(1, sent), 1),
    wireUpPackets: round(wire.up.packets / Math.max(1, sent), 2),
    wireDownPackets: round(wire.down.packets / Math.max(1, sent), 2),
    frameBytes: s?.bytesPerFrame ?? 0,
    lostPackets: wire.up.lost + wire.down.lost,
  };
}

/** The whole model on the device, one thread: latency at `fps` and back-to-back rate. */
async function measureLocal(
  bundle: Bundle,
  source: string,
  fps: number,
  frames: number,
): Promise<{ p50: number; p99: number; accuracy: number; n: number; maxFps: number }> {
  const m = bundle.manifest;
  const head = await onnxEngine.load(bundle.file('head'), { threads: 1 });
  const tail = await onnxEngine.load(bundle.file('tail'), { threads: 1 });
  try {
    const samples: Sample[] = [];
    for await (const s of readSamples(source, { split: 'test', limit: frames })) samples.push(s);
    if (!samples.length) throw new Error(`no samples in ${source}`);
    const one = async (i: number) => {
      const s = samples[i % samples.length]!;
      const img = s.rgb ?? (await decodeImage(s.bytes!));
      const logits = (await tail.run(await head.run(preprocess(img, m.preprocessing)))).data;
      let best = 0;
      for (let j = 1; j < logits.length; j++) if (logits[j]! > logits[best]!) best = j;
      return best === s.label ? 1 : 0;
    };
    for (let i = 0; i < 5; i++) await one(i); // warm-up
    const lat: number[] = [];
    let correct = 0;
    const t0 = performance.now();
    for (let i = 0; i < frames; i++) {
      const due = t0 + (i * 1000) / fps;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      const start = performance.now();
      correct += await one(i);
      lat.push(performance.now() - start);
    }
    const b0 = performance.now();
    for (let i = 0; i < frames; i++) await one(i);
    const maxFps = (1000 * frames) / (performance.now() - b0);
    return {
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      accuracy: correct / frames,
      n: frames,
      maxFps: Math.floor(maxFps),
    };
  } finally {
    await head.close();
    await tail.close();
  }
}

/** Highest rate that holds: start near the link's capacity from the base run's bytes, then
 * bisect between the best held and the lowest failed rate. */
async function searchMaxFps(
  run: (fps: number) => Promise<Probe>,
  base: Probe,
  p: LinkProfile,
  probes: number,
  maxFps: number,
): Promise<{ maxFps: number; failedFps: number | null; probes: Probe[] }> {
  const out: Probe[] = [];
  let lo = base.sustained ? base.fps : 0;
  let hi: number | null = base.sustained ? null : base.fps;
  const upCap = (p.kbps * 1000) / 8 / Math.max(1, base.wireUpBytes);
  const downCap = ((p.downKbps ?? p.kbps) * 1000) / 8 / Math.max(1, base.wireDownBytes);
  let next = base.sustained
    ? Math.min(maxFps, Math.max(lo * 1.5, 0.85 * Math.min(upCap, downCap)))
    : Math.max(1, base.fps / 2);
  for (let i = 0; i < probes; i++) {
    const f = Math.max(1, Math.round(next));
    if (f <= lo || (hi !== null && f >= hi)) break;
    const r = await run(f);
    out.push(r);
    if (r.sustained) lo = f;
    else hi = f;
    if (hi === null) {
      if (lo >= maxFps) break;
      next = Math.min(maxFps, lo * 1.5);
    } else {
      next = (lo + hi) / 2;
      if (hi - lo <= Math.max(1, 0.1 * hi)) break;
    }
  }
  return { maxFps: lo, failedFps: hi, probes: out };
}

function crossovers(rows: LatencyRow[], profiles: LinkProfile[]): Crossover[] {
  // per kind, the method with the lowest p50 at the base rate on each profile
  const best = (kind: MethodKind, prof: string) =>
    rows
      .filter((r) => r.kind === kind && r.profile === prof && r.p50Ms !== null)
      .sort((a, b) => a.p50Ms! - b.p50Ms!)[0];
  const out: Crossover[] = [];
  const kinds: [MethodKind, MethodKind][] = [
    ['local', 'offload'],
    ['local', 'split'],
    ['offload', 'split'],
  ];
  const sorted = [...profiles].sort((a, b) => b.kbps - a.kbps);
  for (const [ka, kb] of kinds) {
    for (let i = 0; i + 1 < sorted.length; i++) {
      const [p, q] = [sorted[i]!, sorted[i + 1]!];
      const [a1, b1, a2, b2] = [
        best(ka, p.name),
        best(kb, p.name),
        best(ka, q.name),
        best(kb, q.name),
      ];
      if (!a1 || !b1 || !a2 || !b2) continue;
      const d1 = a1.p50Ms! - b1.p50Ms!;
      const d2 = a2.p50Ms! - b2.p50Ms!;
      if (d1 === 0 || d2 === 0 || Math.sign(d1) === Math.sign(d2)) continue;
      const t = d1 / (d1 - d2);
      const kbps = Math.exp(Math.log(p.kbps) + t * (Math.log(q.kbps) - Math.log(p.kbps)));
      out.push({
        between: [ka, kb],
        kbps: round(kbps, 0),
        below: d2 < 0 ? `${a2.method} (${ka})` : `${b2.method} (${kb})`,
      });
    }
  }
  return out;
}

function goalOf(rows: LatencyRow[], profiles: LinkProfile[]): LatencyReport['goal'] {
  const slow = [...profiles].sort((a, b) => a.kbps - b.kbps)[0];
  if (!slow) return null;
  const at = rows.filter((r) => r.profile === slow.name);
  const top = (kind: MethodKind) =>
    at
      .filter((r) => r.kind === kind)
      .sort((a, b) => b.maxFps - a.maxFps || (a.p50Ms ?? Infinity) - (b.p50Ms ?? Infinity))[0];
  const o = top('offload');
  const s = top('split');
  const pick = (r: LatencyRow | undefined) =>
    r ? { method: r.method, maxFps: r.maxFps, p50Ms: r.p50Ms } : null;
  const minP50 = (kind: MethodKind) =>
    Math.min(...at.filter((r) => r.kind === kind && r.p50Ms !== null).map((r) => r.p50Ms!));
  const ratio = o && s && o.maxFps > 0 ? round(s.maxFps / o.maxFps, 2) : null;
  return {
    profile: slow.name,
    bestOffload: pick(o),
    bestSplit: pick(s),
    fpsRatio: ratio,
    fpsGoalMet: ratio === null ? null : ratio >= 4,
    p50GoalMet: o && s ? minP50('split') < minP50('offload') : null,
  };
}

export async function benchLatency(o: LatencyOptions = {}): Promise<LatencyReport> {
  const say = o.log ?? (() => undefined);
  const no = namespacesUnavailable();
  if (no) throw new Error(`bench latency: ${no}`);
  const profiles = o.profiles ?? DEFAULT_PROFILES;
  const methods = o.methods ?? DEFAULT_METHODS;
  const fps = o.fps ?? 10;
  const seconds = o.seconds ?? (o.quick ? 4 : 8);
  const probes = o.probes ?? (o.quick ? 1 : 3);
  const maxFps = o.maxFps ?? 150;
  const source = o.source ?? join(PROJECT_ROOT, 'models', 'samples', 'cifar10-test-sample');
  const { resolveModel } = await import('../../core/model/bundle.js');
  const devNs = `sf-lat-dev-${process.pid}`;
  const edgeNs = `sf-lat-edge-${process.pid}`;
  let link: Link | null = null;
  let edge: ChildProcess | null = null;
  let offload: ChildProcess | null = null;
  let edgeUrl = '';
  const rows: LatencyRow[] = [];
  const onSignal = () =>
    background(
      cleanup().then(() => process.exit(130)),
      'latency bench cleanup',
    );
  let closing = false;
  const cleanup = async () => {
    closing = true;
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await Promise.all([...agents].map((a) => stopChild(a)));
    await stopChild(offload);
    await stopChild(edge);
    await link?.close().catch(() => undefined);
    sh('ip', ['netns', 'del', devNs]);
    sh('ip', ['netns', 'del', edgeNs]);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    for (const ns of [devNs, edgeNs]) {
      const r = sh('ip', ['netns', 'add', ns]);
      if (!r.ok) throw new Error(`ip netns add ${ns}: ${r.out}`);
      sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
      sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1']);
    }
    const want = o.shaper ?? 'auto';
    const useNetem = want === 'netem' || (want === 'auto' && netemWorks());
    link = useNetem ? await netemLink(devNs, edgeNs) : await linkemu(devNs, edgeNs, profiles[0]!);
    say(
      `link: ${link.kind === 'netem' ? 'tc netem on a veth pair' : 'scripts/linkemu.py (no netem in this kernel)'}`,
    );
    await link.shape(profiles[0]!);

    const networked = methods.filter((m) => m.kind !== 'local');
    const splitModels = [
      ...new Set(networked.filter((m) => m.kind === 'split').map((m) => m.codec)),
    ];
    const wrap = ['ip', 'netns', 'exec', edgeNs];
    if (networked.length) {
      const e = await startEdgeProcess(
        [
          '--model',
          BACKBONE,
          ...splitModels.map((c) => `${c}-cifar10`),
          '--fleet',
          'split',
          '--workers',
          '1',
          '--no-metrics',
        ],
        [],
        { wrap, host: EDGE_IP },
      );
      edge = e.child;
      edgeUrl = e.mqtt;
      edge.stdout!.resume();
      let edgeErr = '';
      edge.stderr!.on('data', (d: Buffer) => (edgeErr = (edgeErr + d.toString()).slice(-4000)));
      edge.once('exit', (code, sig) => {
        if (!closing) say(`the edge exited (${code ?? sig}): ${edgeErr.trim()}`);
      });
      if (networked.some((m) => m.kind === 'offload')) {
        offload = await startChild(
          wrap[0]!,
          [
            ...wrap.slice(1),
            process.execPath,
            CLI,
            'bench',
            'offload-worker',
            '--url',
            e.mqtt,
            '--fleet',
            'offload',
            '--model',
            BACKBONE,
          ],
          /offload worker up/,
        );
        offload.stderr!.resume();
      }
      say(`edge in ${edgeNs} on ${e.mqtt}; device in ${devNs}`);
    }

    let local: Awaited<ReturnType<typeof measureLocal>> | null = null;
    const localM = methods.find((m) => m.kind === 'local');
    if (localM) {
      local = await measureLocal(
        await resolveModel(localM.model),
        source,
        fps,
        Math.max(20, Math.round(fps * seconds)),
      );
      say(
        `local: p50 ${round(local.p50)} ms, p99 ${round(local.p99)} ms, up to ${local.maxFps} frames/s`,
      );
    }
    for (const p of profiles) {
      await link.shape(p);
      say(`profile ${p.name}: ${p.kbps} kbit/s, ${p.delayMs} ms each way, ${p.loss * 100}% loss`);
      for (const m of methods) {
        if (m.kind === 'local') {
          rows.push({
            profile: p.name,
            method: m.name,
            kind: 'local',
            codec: 'none',
            point: 0,
            p50Ms: round(local!.p50, 2),
            p99Ms: round(local!.p99, 2),
            accuracy: round(local!.accuracy, 4),
            accuracyFrames: local!.n,
            frameBytes: 0,
            wireUpBytesPerFrame: 0,
            wireDownBytesPerFrame: 0,
            maxFps: Math.min(local!.maxFps, maxFps),
            failedFps: null,
            capped: local!.maxFps >= maxFps,
            probes: [],
          });
          continue;
        }
        const ctx = { devNs, url: edgeUrl, link, source, profile: p };
        const frames = (f: number) => Math.max(10, Math.round(f * seconds));
        const base = await probe(ctx, m, fps, frames(fps));
        const run = (f: number) => probe(ctx, m, f, frames(f), base.p50);
        say(
          `  ${m.name} @ ${fps}/s: p50 ${base.p50 === null ? '-' : round(base.p50)} ms, p99 ${base.p99 === null ? '-' : round(base.p99)} ms, ` +
            `${base.wireUpBytes}/${base.wireDownBytes} B (${base.wireUpPackets}/${base.wireDownPackets} packets) up/down per frame, ${base.why}`,
        );
        const s = await searchMaxFps(run, base, p, probes, maxFps);
        for (const r of s.probes)
          say(`    ${r.fps}/s: ${r.why} (p50 ${r.p50 === null ? '-' : round(r.p50)} ms)`);
        rows.push({
          profile: p.name,
          method: m.name,
          kind: m.kind,
          codec: m.codec,
          point: m.point,
          p50Ms: base.p50 === null ? null : round(base.p50, 2),
          p99Ms: base.p99 === null ? null : round(base.p99, 2),
          accuracy: base.accuracy,
          accuracyFrames: base.results,
          frameBytes: base.frameBytes,
          wireUpBytesPerFrame: base.wireUpBytes,
          wireDownBytesPerFrame: base.wireDownBytes,
          maxFps: s.maxFps,
          failedFps: s.failedFps,
          capped: s.failedFps === null && s.maxFps >= maxFps,
          probes: [base, ...s.probes],
        });
      }
    }
    return {
      date: new Date().toISOString(),
      machine: `${process.platform} ${process.arch}, Node ${process.version}, ${(await import('node:os')).cpus().length} CPUs`,
      shaper: link.kind,
      fps,
      probeSeconds: seconds,
      quick: Boolean(o.quick),
      profiles,
      rows,
      crossovers: crossovers(rows, profiles),
      goal: goalOf(rows, profiles),
    };
  } finally {
    await cleanup();
  }
}

const fmt = (x: number | null, d = 1) => (x === null ? '-' : round(x, d).toString());

export function latencyTable(r: LatencyReport): string {
  const t = new Table({
    head: [
      'profile',
      'method',
      `p50 ms @${r.fps}/s`,
      `p99 ms @${r.fps}/s`,
      'top-1 (frames)',
      'framed B',
      'wire B up',
      'wire B down',
      'max fps',
      'fails at',
    ],
  });
  for (const x of r.rows) {
    t.push([
      x.profile,
      x.method,
      fmt(x.p50Ms),
      fmt(x.p99Ms),
      x.accuracy === null ? '-' : `${(x.accuracy * 100).toFixed(1)}% (${x.accuracyFrames})`,
      fmt(x.frameBytes),
      fmt(x.wireUpBytesPerFrame),
      fmt(x.wireDownBytesPerFrame),
      `${x.maxFps}${x.capped ? '+' : ''}`,
      x.failedFps === null ? '-' : String(x.failedFps),
    ]);
  }
  const lines = [t.toString()];
  for (const c of r.crossovers) {
    lines.push(
      `crossover ${c.between.join(' / ')}: at about ${c.kbps} kbit/s; below it ${c.below} is faster`,
    );
  }
  const g = r.goal;
  if (g) {
    lines.push(
      `goal on ${g.profile}: best split ${g.bestSplit?.method ?? '-'} ${g.bestSplit?.maxFps ?? '-'} frames/s vs best input-codec offload ` +
        `${g.bestOffload?.method ?? '-'} ${g.bestOffload?.maxFps ?? '-'} frames/s = ${g.fpsRatio ?? '-'}x ` +
        `(>= 4x: ${g.fpsGoalMet === null ? '-' : g.fpsGoalMet ? 'met' : 'NOT met'}); ` +
        `lower p50 at ${r.fps}/s: ${g.p50GoalMet === null ? '-' : g.p50GoalMet ? 'met' : 'NOT met'}`,
    );
  }
  return lines.join('\n');
}

/** Two panels against link rate (log): p50 at the base rate, and the highest sustained rate. */
export function latencySpec(r: LatencyReport): TopLevelSpec {
  const kbps = new Map(r.profiles.map((p) => [p.name, p.kbps]));
  const values = r.rows.map((x) => ({
    method: x.method,
    kind: x.kind,
    kbps: kbps.get(x.profile) ?? 0,
    p50: x.p50Ms,
    maxFps: x.maxFps,
  }));
  const panel = (field: string, title: string, log: boolean) => ({
    width: 420,
    height: 320,
    mark: { type: 'line' as const, point: true },
    encoding: {
      x: {
        field: 'kbps',
        type: 'quantitative' as const,
        scale: { type: 'log' as const },
        title: 'link rate, kbit/s (log scale)',
      },
      y: {
        field,
        type: 'quantitative' as const,
        scale: log ? { type: 'log' as const } : { zero: false },
        title,
      },
      color: { field: 'method', type: 'nominal' as const, scale: { scheme: 'tableau20' } },
      strokeDash: { field: 'kind', type: 'nominal' as const },
      tooltip: [{ field: 'method' }, { field: 'kbps' }, { field }],
    },
  });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Latency under shaped links: local, input offload, split',
      subtitle: `${r.shaper}; one device; p50 at ${r.fps} frames/s; highest rate whose queue did not grow${r.quick ? ' (QUICK run)' : ''}`,
    },
    background: 'white',
    data: { values },
    hconcat: [
      panel('p50', `p50 latency at ${r.fps} frames/s, ms (log)`, true),
      panel('maxFps', 'highest sustained frames/s (log)', true),
    ],
  } as TopLevelSpec;
}

export async function writeLatencyPlot(r: LatencyReport, file: string): Promise<void> {
  if (!file.endsWith('.svg')) throw new Error(`--plot: ${file} must end in .svg`);
  await writeFile(file, await specToSvg(latencySpec(r)));
}
