/**
 * One probe: `splitfleet agent --json` in the device namespace at a fixed frame rate for a
 * number of frames, judged from the JSON summary it prints last and the link's counters;
 * and the search for the highest frame rate that holds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { round } from '../../core/util/stats.js';
import { cliArgs, onJsonLine, stopChild } from '../child.js';
import type { Link } from './link.js';
import type { LatencyBatch, LatencyMethod, LinkProfile, Probe } from './types.js';

/** What a probe reads of the agent's summary (cli/commands/agent.ts AgentSummary). */
export interface AgentRun {
  sent: number;
  results: number;
  errors: number;
  lost: number;
  accuracy: number | null;
  bytesPerFrame: number;
  p50: number | null;
  p99: number | null;
  quartersP50: (number | null)[];
  /** Frames sent per second of the run, capture to the last answer (null: not told). */
  fps: number | null;
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const numOrNull = (v: unknown): number | null | undefined =>
  v === null ? null : isNum(v) ? v : undefined;

/** The agent's summary line, checked; undefined when the line is not one. */
export function agentRun(v: Record<string, unknown>): AgentRun | undefined {
  const { sent, results, errors, lost, bytesPerFrame, latencyMs } = v;
  if (!isNum(sent) || !isNum(results) || !isNum(errors) || !isNum(lost)) return undefined;
  if (!isNum(bytesPerFrame) || !isRecord(latencyMs)) return undefined;
  const lat = latencyMs;
  const accuracy = numOrNull(v.accuracy);
  const [p50, p99] = [numOrNull(lat.p50), numOrNull(lat.p99)];
  const quarters = Array.isArray(lat.quartersP50) ? lat.quartersP50.map(numOrNull) : [];
  if (accuracy === undefined || p50 === undefined || p99 === undefined) return undefined;
  if (quarters.length !== 4 || quarters.some((q) => q === undefined)) return undefined;
  const quartersP50 = quarters.map((q) => q ?? null);
  const fps = isNum(v.fps) ? v.fps : null;
  return { sent, results, errors, lost, accuracy, bytesPerFrame, p50, p99, quartersP50, fps };
}

/** The fleet of the bench's device and edge. */
export const FLEET = 'bench-latency';

/** Agents running now (stopped by the bench's cleanup on SIGINT). */
export const agents = new Set<ChildProcess>();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ProbeContext {
  devNs: string;
  url: string;
  link: Link;
  source: string;
  profile: LinkProfile;
  /** Wire format of the agent (v2: `--wire v2`). */
  wire: 'v1' | 'v2';
  /** Wire v2 batching (null: none). */
  batch: LatencyBatch | null;
}

/** One agent in the device namespace at `fps` for `frames` frames. */
export async function probe(
  ctx: ProbeContext,
  m: LatencyMethod,
  fps: number,
  frames: number,
  /** p50 at the base rate: a probe whose p50 is above twice it (+50 ms) has a standing queue. */
  unloadedP50: number | null = null,
): Promise<Probe> {
  await ctx.link.reset();
  // drained in time: every answer within this long of its frame's capture (the agent
  // counts a frame unanswered by then as lost, and ends)
  const graceMs = 4000 + 10 * ctx.profile.delayMs;
  const args = ['netns', 'exec', ctx.devNs, process.execPath, ...cliArgs(), 'agent'];
  args.push('--device', 'bench-latency', '--url', ctx.url, '--fleet', FLEET);
  args.push('--model', m.model, '--codec', m.codec, '--point', String(m.point));
  args.push('--source', ctx.source, '--loop', '--fps', String(fps), '--frames', String(frames));
  args.push('--window', '100000', '--result-timeout', String(graceMs), '--json');
  if (ctx.wire === 'v2') args.push('--wire', 'v2');
  if (ctx.batch) {
    args.push('--batch-frames', String(ctx.batch.maxFrames));
    args.push('--batch-delay-ms', String(ctx.batch.maxDelayMs));
  }
  const child = spawn('ip', args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: 'error' },
  });
  let s: AgentRun | undefined;
  let errText = '';
  child.stderr!.on('data', (d: Buffer) => (errText = (errText + d.toString()).slice(-2000)));
  onJsonLine(child.stdout!, (line) => (s = agentRun(line) ?? s));
  agents.add(child);
  const exited = new Promise<void>((r) =>
    child.once('exit', () => {
      agents.delete(child);
      r();
    }),
  );
  // a last resort: an agent that neither ends nor drains (start-up included) is stopped
  const sendMs = (frames / fps) * 1000;
  const killed = await Promise.race([
    exited.then(() => false),
    sleep(60_000 + sendMs + graceMs).then(() => true),
  ]);
  if (killed) await stopChild(child);
  const wire = await ctx.link.count();
  return judge(s, { fps, frames, killed, graceMs, errText, unloadedP50 }, wire);
}

function judge(
  s: AgentRun | undefined,
  c: {
    fps: number;
    frames: number;
    killed: boolean;
    graceMs: number;
    errText: string;
    unloadedP50: number | null;
  },
  wire: Awaited<ReturnType<Link['count']>>,
): Probe {
  const sent = s?.sent ?? c.frames;
  // trend: the second quarter of the answers against the last (the first is warm-up:
  // connection, slow start); a growing queue makes every later frame wait longer
  const first = s?.quartersP50[1] ?? null;
  const last = s?.quartersP50[3] ?? null;
  const trend = first !== null && last !== null && last > first * 1.25 + 30;
  const p50 = s?.p50 ?? null;
  // a rate the device itself cannot make (its CPU) is not one the link sustained: the run
  // takes the frames' time at the rate asked, then the last answers' (at most its p99)
  const made = s?.fps ?? null;
  const runMs = made ? (sent / made) * 1000 : 0;
  const slow = made !== null && runMs > 1.15 * (sent / c.fps) * 1000 + (s?.p99 ?? 0) + 500;
  let why = 'held';
  if (c.killed) why = `agent stopped: no summary ${round((60_000 + c.graceMs) / 1000)} s late`;
  else if (!s) why = `agent failed: ${c.errText.trim().split('\n').pop() ?? ''}`;
  else if (s.lost > 0)
    why = `not drained ${round(c.graceMs / 1000, 1)} s after capture (${s.lost} unanswered)`;
  else if (s.results !== s.sent)
    why = `${s.results}/${s.sent} answered (${s.errors} errors, ${s.lost} lost)`;
  else if (slow) why = `the agent made only ${round(made, 1)} frames/s`;
  else if (trend) why = `latency rose (${round(first)} -> ${round(last)} ms)`;
  else if (c.unloadedP50 !== null && p50 !== null && p50 > 2 * c.unloadedP50 + 50) {
    why = `standing queue (p50 ${round(p50)} ms > 2 x ${round(c.unloadedP50)} ms + 50)`;
  }
  const per = (x: number, digits: number) => round(x / Math.max(1, sent), digits);
  return {
    fps: c.fps,
    frames: sent,
    results: s?.results ?? 0,
    errors: s?.errors ?? 0,
    sustained: why === 'held',
    why,
    p50,
    p99: s?.p99 ?? null,
    firstQuarterP50: first,
    lastQuarterP50: last,
    accuracy: s?.accuracy ?? null,
    wireUpBytes: per(wire.up.bytes, 1),
    wireDownBytes: per(wire.down.bytes, 1),
    wireUpPackets: per(wire.up.packets, 2),
    wireDownPackets: per(wire.down.packets, 2),
    frameBytes: s?.bytesPerFrame ?? 0,
    lostPackets: wire.up.lost + wire.down.lost,
  };
}

/** Highest rate that holds: start near the link's capacity from the base run's bytes, then
 * bisect between the best held and the lowest failed rate. */
export async function searchMaxFps(
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
