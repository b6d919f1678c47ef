/**
 * What `bench latency` measures and reports: link profiles, methods, one probe (an agent
 * run at a fixed frame rate), the rows and the report.
 */

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

export const BACKBONE = 'resnet9w05-cifar10';

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
  /** Wire format of the agents (absent in reports made before it was a choice: v1). */
  wire?: 'v1' | 'v2';
  /** Wire v2 batching of the agents (absent or null: each frame in its own PUBLISH). */
  batch?: LatencyBatch | null;
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
  /** Wire format of the agents (docs/PROTOCOL.md): v1 (default), or v2 (lean frames in a
   * context, compact answers), passed on as the agent's `--wire`. */
  wire?: 'v1' | 'v2';
  /** Wire v2 only: up to `maxFrames` frames per PUBLISH, none waiting more than
   * `maxDelayMs` (the agent's `--batch-frames`, `--batch-delay-ms`). */
  batch?: LatencyBatch | null;
  log?: (line: string) => void;
}

export interface LatencyBatch {
  maxFrames: number;
  maxDelayMs: number;
}
