/**
 * `splitfleet bench latency`: end-to-end latency, accuracy, bytes on the wire and the
 * highest sustainable frame rate of one device over shaped links.
 *
 * The device (`splitfleet agent`) and the edge (`splitfleet edge`: it decodes image frames
 * of input offload and split frames alike) run in two network namespaces of their own,
 * joined by one link per profile (rate, one-way delay and random loss, each direction:
 * link.ts). Both are read through the JSON lines they print (`--json`).
 *
 * Methods: `local` (the whole model on the device, no network: measured in this process,
 * one thread: local.ts), full input offload with the input codecs of `bench rate` (jpeg,
 * jpeg-scan = shared-table JPEG, webp; the edge runs the whole model) and the split codecs
 * at several operating points. For each (profile, method): p50/p99 latency at 10 frames/s,
 * accuracy (result labels against the sample's labels, over the frames of that run), wire
 * bytes per frame both ways, and the highest frame rate that keeps the queue from growing
 * (searched, a bounded number of probes: probe.ts).
 */
import type { ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { resolveBundle } from '../../core/model/zoo.js';
import { PROJECT_ROOT } from '../../core/paths.js';
import { background } from '../../core/util/log.js';
import { round } from '../../core/util/stats.js';
import { stopChild } from '../child.js';
import { startEdgeProcess } from '../connections.js';
import { EDGE_IP, makeNamespaces, openLink, removeNamespaces, type Link } from './link.js';
import { measureLocal, type LocalRun } from './local.js';
import { agents, FLEET, probe, searchMaxFps } from './probe.js';
import { crossovers, goalOf } from './report.js';
import {
  BACKBONE,
  DEFAULT_METHODS,
  DEFAULT_PROFILES,
  type LatencyMethod,
  type LatencyOptions,
  type LatencyReport,
  type LatencyRow,
  type LinkProfile,
} from './types.js';
import { namespacesUnavailable } from './link.js';

/** The edge in its namespace, serving the backbone (whole-image frames of input offload)
 * and the split methods' codec bundles. */
async function startEdgeSide(
  edgeNs: string,
  methods: LatencyMethod[],
  say: (line: string) => void,
  closing: () => boolean,
): Promise<{ url: string; children: ChildProcess[] }> {
  const splitModels = [...new Set(methods.filter((m) => m.kind === 'split').map((m) => m.codec))];
  const wrap = ['ip', 'netns', 'exec', edgeNs];
  const e = await startEdgeProcess(
    [
      ...['--model', BACKBONE, ...splitModels.map((c) => `${c}-cifar10`)],
      ...['--fleet', FLEET, '--workers', '1', '--no-metrics'],
    ],
    [],
    { wrap, host: EDGE_IP },
  );
  const children = [e.child];
  let edgeErr = '';
  e.child.stderr!.on('data', (d: Buffer) => (edgeErr = (edgeErr + d.toString()).slice(-4000)));
  e.child.once('exit', (code, sig) => {
    if (!closing()) say(`the edge exited (${code ?? sig}): ${edgeErr.trim()}`);
  });
  return { url: e.mqtt, children };
}

function localRow(p: LinkProfile, m: LatencyMethod, local: LocalRun, maxFps: number): LatencyRow {
  return {
    profile: p.name,
    method: m.name,
    kind: 'local',
    codec: 'none',
    point: 0,
    p50Ms: round(local.p50, 2),
    p99Ms: round(local.p99, 2),
    accuracy: round(local.accuracy, 4),
    accuracyFrames: local.n,
    frameBytes: 0,
    wireUpBytesPerFrame: 0,
    wireDownBytesPerFrame: 0,
    maxFps: Math.min(local.maxFps, maxFps),
    failedFps: null,
    capped: local.maxFps >= maxFps,
    probes: [],
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
  // (one bench at a time per process: the namespaces are named by it)
  const devNs = `sf-lat-dev-${process.pid}`;
  const edgeNs = `sf-lat-edge-${process.pid}`;
  let link: Link | null = null;
  let children: ChildProcess[] = [];
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
    for (const c of children) await stopChild(c);
    await link?.close().catch(() => undefined);
    removeNamespaces(devNs, edgeNs);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    makeNamespaces(devNs, edgeNs);
    link = await openLink(devNs, edgeNs, o.shaper ?? 'auto', profiles[0]!);
    say(
      `link: ${link.kind === 'netem' ? 'tc netem on a veth pair' : 'scripts/linkemu.py (no netem in this kernel)'}`,
    );
    const networked = methods.filter((m) => m.kind !== 'local');
    let edgeUrl = '';
    if (networked.length) {
      const edge = await startEdgeSide(edgeNs, networked, say, () => closing);
      edgeUrl = edge.url;
      children = edge.children;
      say(`edge in ${edgeNs} on ${edgeUrl}; device in ${devNs}`);
    }

    let local: LocalRun | null = null;
    const localM = methods.find((m) => m.kind === 'local');
    if (localM) {
      const frames = Math.max(20, Math.round(fps * seconds));
      local = await measureLocal(await resolveBundle(localM.model), source, fps, frames);
      say(
        `local: p50 ${round(local.p50)} ms, p99 ${round(local.p99)} ms, up to ${local.maxFps} frames/s`,
      );
    }
    for (const p of profiles) {
      await link.shape(p);
      say(`profile ${p.name}: ${p.kbps} kbit/s, ${p.delayMs} ms each way, ${p.loss * 100}% loss`);
      for (const m of methods) {
        if (m.kind === 'local') {
          rows.push(localRow(p, m, local!, maxFps));
          continue;
        }
        const ctx = {
          devNs,
          url: edgeUrl,
          link,
          source,
          profile: p,
          wire: o.wire ?? 'v1',
          batch: o.batch ?? null,
        };
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
      machine: `${process.platform} ${process.arch}, Node ${process.version}, ${cpus().length} CPUs`,
      shaper: link.kind,
      wire: o.wire ?? 'v1',
      batch: o.batch ?? null,
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
