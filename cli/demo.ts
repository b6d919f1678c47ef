/**
 * `splitfleet demo` (= `npm start`): an edge node with its embedded broker and decoder
 * workers plus a few simulated devices on the shipped sample (or any image folder), all
 * offline, with a live table and a final summary that set the bytes per frame against
 * sending the image (cli/demo-baselines.ts) and the float32 split tensor. It runs a
 * number of frames, or until stopped (frames 0); a signal stops it with the summary.
 */
import Table from 'cli-table3';
import { DEFAULT_FLEET } from '../fleet-config/schema.js';
import { Agent } from '../device-agent/agent.js';
import { Accuracy, datasetLabels, type LabelOf } from '../device-agent/accuracy.js';
import { startEdge, type Edge } from '../edge-broker/edge.js';
import { ListenError } from '../edge-broker/broker.js';
import { codecByName } from '../core/codec/registry.js';
import { CIFAR10_CLASSES } from '../core/data/cifar.js';
import { describeSplit, splitTensorBytes, type Bundle } from '../core/model/bundle.js';
import type { BackboneManifest } from '../core/model/manifest.js';
import { deviceFilter } from '../core/wire/topics.js';
import { percentile, round } from '../core/util/stats.js';
import { measureImageBaselines, type ImageBaselines } from './demo-baselines.js';
import { stopOnSignal } from './signals.js';

export interface DemoOptions {
  bundle: Bundle;
  /** The unsplit model the image baselines are measured for (null: none in the zoo). */
  base: BackboneManifest | null;
  /** Frames in all; 0: until stopped (a signal). */
  frames: number;
  devices: number;
  codec: string;
  point: number;
  fps: number;
  workers: number;
  port: number;
  wsPort: number;
  /** Whether the ports were given (a busy one is then an error, not replaced). */
  portsGiven: boolean;
  host: string;
  json: boolean;
  source: string;
}

/** What sending the picture costs per frame, and the float32 split tensor, in bytes. */
export interface DemoBaselines {
  /** Images of the source they were measured on (0: none measured). */
  images: number;
  storedJpegBytes: number | null;
  bestInputCodec: string | null;
  bestInputBytes: number | null;
  splitFp32Bytes: number;
}

export interface DemoSummary {
  frames: number;
  results: number;
  errors: number;
  lost: number;
  accuracy: number;
  bytesPerFrame: number;
  /** How many times smaller than the float32 split tensor. */
  compressionRatio: number;
  /** How many times smaller than the stored JPEG and the best input codec (null: not
   * measured on this source). */
  vsStoredJpeg: number | null;
  vsBestInput: number | null;
  baselines: DemoBaselines;
  latencyMs: { p50: number; p99: number };
  model: string;
  codec: string;
  /** Results per label the edge answered with (the bundle's own labels). */
  labels: Record<string, number>;
}

/** The labels of the source's samples as indexes into the bundle's own labels: by the
 * sample's class folder (`.../cat/0001.jpg`), else by the source's own label's name. */
async function labelsFor(source: string, labels: readonly string[]): Promise<LabelOf> {
  const own = await datasetLabels({ source });
  const index = new Map(labels.map((l, i) => [l, i]));
  return (name) => {
    const byFolder = index.get(name.split(/[\\/]/).at(-2) ?? '');
    if (byFolder !== undefined) return byFolder;
    const l = own(name);
    return l === undefined ? undefined : index.get(CIFAR10_CLASSES[l] ?? '');
  };
}

const times = (big: number | null, bpf: number) =>
  big !== null && bpf > 0 ? round(big / bpf, 1) : null;

async function startEdgeOnFreePort(opts: DemoOptions): Promise<Edge> {
  const common = {
    bundles: [opts.bundle],
    workers: opts.workers,
    host: opts.host,
    edgeId: 'demo-edge',
    statusFleet: DEFAULT_FLEET,
  };
  try {
    return await startEdge({ ...common, port: opts.port, wsPort: opts.wsPort });
  } catch (e) {
    // the default ports taken (a mosquitto on 1883/9001): free ones, said; given ones: an error
    if (!(e instanceof ListenError) || e.code !== 'EADDRINUSE' || opts.portsGiven) throw e;
    process.stderr.write(`${e.message.split(';')[0]}: using free ports\n`);
    return startEdge({ ...common, port: 0, wsPort: 0 });
  }
}

export async function runDemo(opts: DemoOptions): Promise<DemoSummary> {
  const m = opts.bundle.manifest;
  const codec = opts.bundle.codec ?? codecByName(opts.codec);
  const out = opts.json ? process.stderr : process.stdout;
  const forever = opts.frames === 0;
  // measured on the source's own images while the edge starts
  const measuring = opts.base
    ? measureImageBaselines(opts.source, opts.base)
    : Promise.resolve<ImageBaselines | null>(null);
  const edge = await startEdgeOnFreePort(opts);
  const splitBytes = splitTensorBytes(m);
  const measured = await measuring.catch(async (e: unknown) => {
    await edge.close();
    throw e;
  });
  const baselines: DemoBaselines = {
    images: measured?.images ?? 0,
    storedJpegBytes: measured?.storedJpeg?.bytesPerFrame ?? null,
    bestInputCodec: measured?.bestInput?.codec ?? null,
    bestInputBytes: measured?.bestInput?.bytesPerFrame ?? null,
    splitFp32Bytes: splitBytes,
  };
  const pointLabel = codec.points.find((p) => p.index === opts.point)?.label ?? opts.point;
  const against = [
    baselines.storedJpegBytes !== null ? `the stored JPEG ${baselines.storedJpegBytes} B` : null,
    baselines.bestInputBytes !== null
      ? `the best input codec (${baselines.bestInputCodec}) ${baselines.bestInputBytes} B`
      : null,
    `the float32 split tensor ${splitBytes} B`,
  ].filter((x) => x !== null);
  out.write(
    `splitfleet demo: edge broker on ${edge.url} (WebSocket ${edge.wsUrl ?? 'off'})\n` +
      `  watch results:  mosquitto_sub -L '${edge.url}/${deviceFilter('result', DEFAULT_FLEET)}' -v\n` +
      `  model ${m.name}@${m.version}, split after ${describeSplit(m)}, ` +
      `codec ${codec.name} point ${opts.point} (${pointLabel}), ${opts.devices} devices, ` +
      `${forever ? 'until stopped (Ctrl-C)' : `${opts.frames} frames`}\n` +
      `  sending the image instead, per frame${baselines.images ? ` (measured on ${baselines.images} images of the source)` : ''}: ${against.join(', ')}\n` +
      `  Node-RED:       splitfleet edge --node-red starts the flow editor on http://127.0.0.1:1880/\n` +
      `                  and the live dashboard on http://127.0.0.1:1880/dashboard (flows/)\n\n`,
  );

  const labelOf = await labelsFor(opts.source, m.labels);
  const per = Math.floor(opts.frames / opts.devices);
  const agents: Agent[] = [];
  const scores = new Map<Agent, Accuracy>();
  const labelCounts = new Map<string, number>();
  for (let i = 0; i < opts.devices; i++) {
    const n = per + (i < opts.frames % opts.devices ? 1 : 0);
    const agent = new Agent({
      url: edge.url,
      fleet: DEFAULT_FLEET,
      deviceId: `device-${String(i + 1).padStart(2, '0')}`,
      bundle: opts.bundle,
      codec: opts.codec,
      point: opts.point,
      source: { source: opts.source, loop: true, limit: forever ? undefined : n, offset: i * 37 },
      fps: opts.fps,
      maxInFlight: 4,
      resultTimeoutMs: 15_000,
    });
    const score = new Accuracy(labelOf);
    score.follow(agent);
    agent.on('result', (r) => labelCounts.set(r.label, (labelCounts.get(r.label) ?? 0) + 1));
    scores.set(agent, score);
    agents.push(agent);
  }
  await Promise.all(agents.map((a) => a.start()));

  const ratio = (big: number | null, bpf: number) => {
    const x = times(big, bpf);
    return x === null ? '-' : `${x}x`;
  };
  const render = () => {
    const t = new Table({
      head: [
        'device',
        'sent',
        'results',
        'errors',
        'lost',
        'top-1',
        'B/frame',
        'vs JPEG',
        `vs ${baselines.bestInputCodec?.split('/')[0] ?? 'input'}`,
        'vs fp32',
        'p50 ms',
        'p99 ms',
      ],
      style: { head: [], border: [] },
    });
    for (const a of agents) {
      const s = a.stats;
      const acc = scores.get(a)!;
      const bpf = s.sent ? s.frameBytes / s.sent : 0;
      t.push([
        a.deviceId,
        s.sent,
        s.results,
        s.errors,
        s.lost,
        acc.labelled ? `${(100 * acc.top1).toFixed(1)}%` : '-',
        bpf ? bpf.toFixed(0) : '-',
        ratio(baselines.storedJpegBytes, bpf),
        ratio(baselines.bestInputBytes, bpf),
        ratio(splitBytes, bpf),
        s.latenciesMs.length ? percentile(s.latenciesMs, 50).toFixed(1) : '-',
        s.latenciesMs.length ? percentile(s.latenciesMs, 99).toFixed(1) : '-',
      ]);
    }
    return t.toString();
  };

  const summarize = (): DemoSummary => {
    const all = agents.map((a) => a.stats);
    const sum = (f: (s: (typeof all)[number]) => number) => all.reduce((a, s) => a + f(s), 0);
    const lat = all.flatMap((s) => s.latenciesMs);
    const sent = sum((s) => s.sent);
    const bytesPerFrame = sent ? sum((s) => s.frameBytes) / sent : 0;
    const labelled = [...scores.values()].reduce((a, x) => a + x.labelled, 0);
    const correct = [...scores.values()].reduce((a, x) => a + x.correct, 0);
    return {
      frames: sent,
      results: sum((s) => s.results),
      errors: sum((s) => s.errors),
      lost: sum((s) => s.lost),
      accuracy: round(correct / Math.max(1, labelled), 4),
      bytesPerFrame: round(bytesPerFrame, 1),
      compressionRatio: bytesPerFrame ? round(splitBytes / bytesPerFrame, 2) : 0,
      vsStoredJpeg: times(baselines.storedJpegBytes, bytesPerFrame),
      vsBestInput: times(baselines.bestInputBytes, bytesPerFrame),
      baselines,
      latencyMs: {
        p50: lat.length ? round(percentile(lat, 50), 2) : 0,
        p99: lat.length ? round(percentile(lat, 99), 2) : 0,
      },
      model: `${m.name}@${m.version}`,
      codec: `${codec.name}/${pointLabel}`,
      labels: Object.fromEntries(labelCounts),
    };
  };

  // a terminal gets the live table; a pipe a progress line every PROGRESS_MS
  const live = !opts.json && process.stdout.isTTY;
  let lines = 0;
  let lastProgress = Date.now();
  const timer = setInterval(() => {
    if (live) {
      const t = render();
      if (lines) out.write(`\x1b[${lines}A\x1b[J`);
      out.write(t + '\n');
      lines = t.split('\n').length;
    } else if (Date.now() - lastProgress >= PROGRESS_MS) {
      lastProgress = Date.now();
      const s = summarize();
      out.write(
        `demo: ${s.frames} sent, ${s.results} results, ${s.errors} errors, ${s.lost} lost, ` +
          `${s.bytesPerFrame} B/frame, p50 ${s.latencyMs.p50} ms\n`,
      );
    }
  }, 250);

  let finished: Promise<DemoSummary> | null = null;
  const finish = (now: boolean) =>
    (finished ??= (async () => {
      clearInterval(timer);
      // a signal stops capture at once: frames still unanswered count as lost
      if (now) await Promise.all(agents.map((a) => a.stop(true)));
      if (lines) out.write(`\x1b[${lines}A\x1b[J`);
      if (!opts.json) out.write(render() + '\n');
      const summary = summarize();
      if (!now) await Promise.all(agents.map((a) => a.stop()));
      const es = edge.stats();
      await edge.close();
      out.write(summaryLine(summary, es));
      if (opts.json) process.stdout.write(JSON.stringify(summary) + '\n');
      return summary;
    })());
  stopOnSignal(async () => {
    await finish(true);
  });
  await Promise.all(agents.map((a) => a.run()));
  return finish(false);
}

/** A progress line every 5 s when the output is not a terminal. */
const PROGRESS_MS = 5000;

function summaryLine(s: DemoSummary, es: { received: number; duplicates: number }): string {
  const b = s.baselines;
  const vs = [
    s.vsStoredJpeg !== null
      ? `${s.vsStoredJpeg}x smaller than the stored JPEG (${b.storedJpegBytes} B)`
      : null,
    s.vsBestInput !== null
      ? `${s.vsBestInput}x smaller than ${b.bestInputCodec} (${b.bestInputBytes} B)`
      : null,
    `${round(s.compressionRatio, 1)}x smaller than the float32 split tensor (${b.splitFp32Bytes} B)`,
  ].filter((x) => x !== null);
  return (
    `\nsummary: ${s.results}/${s.frames} results, ${s.errors} errors, ${s.lost} lost; ` +
    `top-1 ${(s.accuracy * 100).toFixed(2)}% on the source's labelled images; ` +
    `${s.bytesPerFrame} B/frame: ${vs.join(', ')}; ` +
    `latency p50 ${s.latencyMs.p50} ms, p99 ${s.latencyMs.p99} ms; ` +
    `edge saw ${es.received} frames, ${es.duplicates} duplicates\n`
  );
}
