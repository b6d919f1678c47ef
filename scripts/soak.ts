/**
 * Soak: N simulated devices at F frames/s for S seconds against one edge process, the
 * edge's memory sampled every 10 s (`npm run soak -- [devices] [fps] [seconds]`, default
 * 1000 10 600). The devices (bench/sim-devices.ts) replay real frames of the shipped
 * SplitFleet codec with new frame ids, as agents would send them, and count their
 * answers: results, and explicit errors (an overloaded edge refuses frames with
 * `overloaded`; nothing may go unanswered). Prints one line per sample and a JSON
 * summary; exits 1 if any frame got no answer.
 * SOAK_EDGE_ARGS: more `splitfleet edge` flags (e.g. "--workers 2 --max-batch 32");
 * SOAK_EDGE_NODE_ARGS: node flags for the edge (e.g. --cpu-prof).
 */
import { percentile, round } from '../core/util/stats.js';
import { rssMiB, startEdgeProcess } from '../bench/connections.js';
import { sampleFrames, SimDevices } from '../bench/sim-devices.js';
import { background } from '../core/util/log.js';

const [devices = 1000, fps = 10, seconds = 600] = process.argv.slice(2).map(Number);
const SAMPLE_MS = 10_000;

const frames = await sampleFrames('splitfleet-cifar10', 'splitfleet', 0);
const { child: edge, mqtt: url } = await startEdgeProcess(
  [
    ...['--model', 'splitfleet-cifar10', '--no-metrics', '--workers', '2', '--fleet', 'soak'],
    ...(process.env.SOAK_EDGE_ARGS?.split(' ').filter(Boolean) ?? []),
  ],
  process.env.SOAK_EDGE_NODE_ARGS?.split(' ').filter(Boolean) ?? [],
  { built: true }, // memory is watched: as deployed, not through tsx
);
const sims = await SimDevices.connect(url, { fleet: 'soak', count: devices, frames });
const t0 = Date.now();
sims.start(fps);
console.log(
  `soak: ${devices} devices x ${fps} frames/s for ${seconds} s against ${url} (edge pid ${edge.pid})`,
);
const samples: { t: number; rssMiB: number; sent: number; results: number; errors: number }[] = [];
const sample = async () => {
  const c = sims.counts;
  const s = {
    t: Math.round((Date.now() - t0) / 1000),
    rssMiB: await rssMiB(edge.pid!),
    ...{ sent: c.sent, results: c.results, errors: c.errors },
  };
  samples.push(s);
  console.log(
    `t=${s.t}s edge RSS ${s.rssMiB} MiB, sent ${s.sent}, results ${s.results}, errors ${s.errors} (overloaded ${c.overloaded}), unanswered ${sims.pending.size}`,
  );
};
const sampler = setInterval(() => background(sample(), 'soak sample'), SAMPLE_MS);
await new Promise((r) => setTimeout(r, seconds * 1000));
sims.stop();
// every frame sent gets its answer (or the run fails)
const unanswered = await sims.drain(60_000);
clearInterval(sampler);
await sample();
const rss = samples.map((s) => s.rssMiB);
const summary = {
  devices,
  fps,
  seconds,
  ...sims.counts,
  unanswered,
  resultsPerSecond: Math.round(sims.counts.results / seconds),
  latencyMs: {
    p50: round(percentile(sims.latencies, 50), 1),
    p99: round(percentile(sims.latencies, 99), 1),
  },
  edgeRssMiB: { first: rss[0], max: Math.max(...rss), last: rss[rss.length - 1] },
};
console.log(JSON.stringify(summary));
sims.close();
edge.kill('SIGTERM');
process.exit(unanswered === 0 ? 0 : 1);
