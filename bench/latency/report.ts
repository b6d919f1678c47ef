/** What `bench latency` concludes and shows: crossovers, the goal, the table and the plot. */
import { writeFile } from 'node:fs/promises';
import Table from 'cli-table3';
import type { TopLevelSpec } from 'vega-lite';
import { round } from '../../core/util/stats.js';
import { specToSvg } from '../plot.js';
import type { Crossover, LatencyReport, LatencyRow, LinkProfile, MethodKind } from './types.js';

export function crossovers(rows: LatencyRow[], profiles: LinkProfile[]): Crossover[] {
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

/** The frame rate goal on the slowest link: the best split point sustains at least this
 * many times the best input codec's frame rate. */
export const FPS_GOAL = 2.5;

export function goalOf(rows: LatencyRow[], profiles: LinkProfile[]): LatencyReport['goal'] {
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
    fpsGoalMet: ratio === null ? null : ratio >= FPS_GOAL,
    p50GoalMet: o && s ? minP50('split') < minP50('offload') : null,
  };
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
      `framed B (wire ${r.wire ?? 'v1'}${r.batch ? `, batches of ${r.batch.maxFrames}` : ''})`,
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
        `(>= ${FPS_GOAL}x: ${g.fpsGoalMet === null ? '-' : g.fpsGoalMet ? 'met' : 'NOT met'}); ` +
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
