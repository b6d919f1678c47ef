/**
 * `splitfleet demo` (= `npm start`): an edge node with its embedded broker and decoder
 * workers plus a few simulated devices on the shipped CIFAR-10 sample, all offline,
 * with a live table and a final summary.
 */
import Table from 'cli-table3';
import { Agent } from '../device-agent/agent.js';
import { Accuracy, datasetLabels } from '../device-agent/accuracy.js';
import { startEdge, type Edge } from '../edge-broker/edge.js';
import { codecByName } from '../core/codec/registry.js';
import { describeSplit, splitTensorBytes, type Bundle } from '../core/model/bundle.js';
import { deviceFilter } from '../core/wire/topics.js';
import { percentile, round } from '../core/util/stats.js';

export interface DemoOptions {
  bundle: Bundle;
  frames: number;
  devices: number;
  codec: string;
  point: number;
  fps: number;
  workers: number;
  port: number;
  wsPort: number;
  host: string;
  json: boolean;
  source: string;
}

export interface DemoSummary {
  frames: number;
  results: number;
  errors: number;
  lost: number;
  accuracy: number;
  bytesPerFrame: number;
  compressionRatio: number;
  latencyMs: { p50: number; p99: number };
  model: string;
  codec: string;
}

async function startEdgeOnFreePort(opts: DemoOptions): Promise<Edge> {
  const common = {
    bundles: [opts.bundle],
    workers: opts.workers,
    host: opts.host,
    edgeId: 'demo-edge',
    statusFleet: 'demo',
  };
  try {
    return await startEdge({ ...common, port: opts.port, wsPort: opts.wsPort });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    process.stderr.write(`port ${opts.port} or ${opts.wsPort} is busy: using free ports\n`);
    return startEdge({ ...common, port: 0, wsPort: 0 });
  }
}

export async function runDemo(opts: DemoOptions): Promise<DemoSummary> {
  const m = opts.bundle.manifest;
  const codec = opts.bundle.codec ?? codecByName(opts.codec);
  const out = opts.json ? process.stderr : process.stdout;
  const edge = await startEdgeOnFreePort(opts);
  out.write(
    `splitfleet demo: edge broker on ${edge.url} (WebSocket ${edge.wsUrl ?? 'off'})\n` +
      `  watch results:  mosquitto_sub -L '${edge.url}/${deviceFilter('result', 'demo')}' -v\n` +
      `  model ${m.name}@${m.version}, split after ${describeSplit(m)}, ` +
      `codec ${codec.name} point ${opts.point}, ${opts.devices} devices, ${opts.frames} frames\n` +
      `  Node-RED:       splitfleet edge --node-red starts the flow editor on http://127.0.0.1:1880/\n` +
      `                  and the live dashboard on http://127.0.0.1:1880/dashboard (flows/)\n\n`,
  );

  // the demo holds the sample's labels and scores the results with them
  const labelOf = await datasetLabels({ source: opts.source });
  const per = Math.floor(opts.frames / opts.devices);
  const agents: Agent[] = [];
  const scores = new Map<Agent, Accuracy>();
  for (let i = 0; i < opts.devices; i++) {
    const n = per + (i < opts.frames % opts.devices ? 1 : 0);
    const agent = new Agent({
      url: edge.url,
      fleet: 'demo',
      deviceId: `device-${String(i + 1).padStart(2, '0')}`,
      bundle: opts.bundle,
      codec: opts.codec,
      point: opts.point,
      source: { source: opts.source, loop: true, limit: n, offset: i * 37 },
      fps: opts.fps,
      maxInFlight: 4,
      resultTimeoutMs: 15_000,
    });
    const score = new Accuracy(labelOf);
    score.follow(agent);
    scores.set(agent, score);
    agents.push(agent);
  }
  await Promise.all(agents.map((a) => a.start()));

  const splitBytes = splitTensorBytes(m);
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
        'x vs fp32',
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
        bpf ? (splitBytes / bpf).toFixed(1) : '-',
        s.latenciesMs.length ? percentile(s.latenciesMs, 50).toFixed(1) : '-',
        s.latenciesMs.length ? percentile(s.latenciesMs, 99).toFixed(1) : '-',
      ]);
    }
    return t.toString();
  };
  const live = !opts.json && process.stdout.isTTY;
  let lines = 0;
  const timer = setInterval(() => {
    if (!live) return;
    const s = render();
    if (lines) out.write(`\x1b[${lines}A\x1b[J`);
    out.write(s + '\n');
    lines = s.split('\n').length;
  }, 250);

  await Promise.all(agents.map((a) => a.run()));
  clearInterval(timer);
  if (lines) out.write(`\x1b[${lines}A\x1b[J`);
  if (!opts.json) out.write(render() + '\n');

  const all = agents.map((a) => a.stats);
  const sum = (f: (s: (typeof all)[number]) => number) => all.reduce((a, s) => a + f(s), 0);
  const lat = all.flatMap((s) => s.latenciesMs);
  const sent = sum((s) => s.sent);
  const bytesPerFrame = sent ? sum((s) => s.frameBytes) / sent : 0;
  const summary: DemoSummary = {
    frames: sent,
    results: sum((s) => s.results),
    errors: sum((s) => s.errors),
    lost: sum((s) => s.lost),
    accuracy: round(
      [...scores.values()].reduce((a, x) => a + x.correct, 0) /
        Math.max(
          1,
          [...scores.values()].reduce((a, x) => a + x.labelled, 0),
        ),
      4,
    ),
    bytesPerFrame: round(bytesPerFrame, 1),
    compressionRatio: bytesPerFrame ? round(splitBytes / bytesPerFrame, 2) : 0,
    latencyMs: { p50: round(percentile(lat, 50), 2), p99: round(percentile(lat, 99), 2) },
    model: `${m.name}@${m.version}`,
    codec: `${codec.name}/${codec.points.find((p) => p.index === opts.point)?.label ?? opts.point}`,
  };
  await Promise.all(agents.map((a) => a.stop()));
  const es = edge.stats();
  await edge.close();
  out.write(
    `\nsummary: ${summary.results}/${summary.frames} results, ${summary.errors} errors, ${summary.lost} lost; ` +
      `top-1 ${(summary.accuracy * 100).toFixed(2)}% on the shipped sample; ` +
      `${summary.bytesPerFrame} B/frame (${summary.compressionRatio}x smaller than the ${splitBytes} B fp32 split tensor); ` +
      `latency p50 ${summary.latencyMs.p50} ms, p99 ${summary.latencyMs.p99} ms; ` +
      `edge saw ${es.received} frames, ${es.duplicates} duplicates\n`,
  );
  if (opts.json) process.stdout.write(JSON.stringify(summary) + '\n');
  return summary;
}
