/**
 * What a rollout job asks for, and how its health is judged: the spec an operator sends
 * (checked field by field before use: it comes from the network), the defaults of every
 * field (the one place they are set), the wave sizes and the health gates.
 */
import { OpError } from '../../core/wire/rpc.js';
import { isValidId } from '../../core/wire/topics.js';
import { round } from '../../core/util/stats.js';

export interface HealthGates {
  /** Errors / (results + errors) on the new model, at most. */
  maxErrorRate: number;
  /** p95 of the edge latency (receive -> result), ms, at most; null: not checked. */
  maxLatencyMs: number | null;
  /** Mean top-1 score on the new model, at least; null: not checked. */
  minConfidence: number | null;
  /** Drop of the mean top-1 score against the same devices before the job, at most. */
  maxConfidenceDrop: number | null;
}

export interface RolloutSpec {
  /** `name@version` of a bundle in the edge's registry. */
  model: string;
  devices?: string[];
  groups?: string[];
  /** Percent of the devices named (of the whole fleet when none are), picked by a hash. */
  percent?: number;
  /** Waves as cumulative sizes: a device count (1) or a share ("50%"); the last wave
   * always covers every target. Default: one canary device, then all. */
  waves?: (number | string)[];
  gates?: Partial<HealthGates>;
  /** Outcomes (results + errors) each wave device needs before its gates are read. */
  minFrames?: number;
  /** Longest wait for those outcomes, ms; a device with none by then fails the wave. */
  soakMs?: number;
  /** Longest wait for the wave's devices to apply the new config, ms. */
  applyTimeoutMs?: number;
  /** Roll back by itself when a gate fails (default true). */
  autoRollback?: boolean;
}

/** Every default of a rollout (the CLI and the Node-RED nodes show these). */
export const ROLLOUT_DEFAULTS = Object.freeze({
  gates: Object.freeze({
    maxErrorRate: 0.05,
    maxLatencyMs: null,
    minConfidence: null,
    maxConfidenceDrop: 0.15,
  } satisfies HealthGates),
  waves: Object.freeze([1, '100%'] as const),
  minFrames: 20,
  soakMs: 60_000,
  applyTimeoutMs: 120_000,
  autoRollback: true,
});

/** A spec the edge refuses, or a job it cannot run; the operator gets the message. */
export class RolloutError extends OpError {
  override name = 'RolloutError';
}

export interface WaveHealth {
  device: string;
  frames: number;
  errors: number;
  errorRate: number;
  latencyMsP95: number | null;
  confidence: number | null;
}

const FIELDS = [
  'model',
  'devices',
  'groups',
  'percent',
  'waves',
  'gates',
  'minFrames',
  'soakMs',
  'applyTimeoutMs',
  'autoRollback',
] as const;
const GATES = ['maxErrorRate', 'maxLatencyMs', 'minConfidence', 'maxConfidenceDrop'] as const;
/** A bundle of the registry as a config names it: `name` or `name@version`. */
const MODEL_RE = /^[A-Za-z0-9_.-]{1,64}(@[0-9]{1,6})?$/;
const SHARE_RE = /^(\d+(?:\.\d+)?)%$/;
const COUNT_RE = /^\d{1,9}$/;
const MAX_NAMES = 100_000;
const MAX_WAVES = 100;
/** A week: the longest soak or apply wait a job may ask for. */
const MAX_WAIT_MS = 7 * 24 * 3600 * 1000;

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const shown = (v: unknown) => (JSON.stringify(v) ?? String(v)).slice(0, 64);

function fieldsOf(v: unknown, what: string, known: readonly string[]): Record<string, unknown> {
  if (!isObj(v)) throw new RolloutError(`${what} must be an object`);
  for (const k of Object.keys(v)) {
    if (!known.includes(k))
      throw new RolloutError(`${what}: unknown field ${shown(k)}; fields: ${known.join(', ')}`);
  }
  return v;
}

function ids(v: unknown, what: string): string[] {
  if (!Array.isArray(v) || v.length > MAX_NAMES)
    throw new RolloutError(`${what} must be a list of ids`);
  return v.map((d) => {
    if (typeof d !== 'string' || !isValidId(d))
      throw new RolloutError(`${what}: ${shown(d)} is not an id (1..64 of [A-Za-z0-9_.-])`);
    return d;
  });
}

function num(v: unknown, what: string, ok: (n: number) => boolean, rule: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v))
    throw new RolloutError(`${what} must be ${rule}`);
  return v;
}

const share = (v: unknown, what: string) => num(v, what, (n) => n >= 0 && n <= 1, 'in [0, 1]');
const wait = (v: unknown, what: string) =>
  num(v, what, (n) => Number.isInteger(n) && n >= 1 && n <= MAX_WAIT_MS, 'a whole ms, 1..1 week');

function wave(w: unknown): number | string {
  if (typeof w === 'number' && Number.isInteger(w) && w >= 1) return w;
  if (typeof w === 'string' && COUNT_RE.test(w) && Number(w) >= 1) return Number(w);
  if (typeof w === 'string') {
    const m = SHARE_RE.exec(w);
    if (m && Number(m[1]) > 0) return w;
  }
  throw new RolloutError(`bad wave ${shown(w)}: a count >= 1 or a share like "50%"`);
}

function gatesOf(v: unknown): Partial<HealthGates> {
  const g = fieldsOf(v, 'gates', GATES);
  const out: Partial<HealthGates> = {};
  if (g.maxErrorRate !== undefined) out.maxErrorRate = share(g.maxErrorRate, 'maxErrorRate');
  if (g.maxLatencyMs !== undefined)
    out.maxLatencyMs =
      g.maxLatencyMs === null
        ? null
        : num(g.maxLatencyMs, 'maxLatencyMs', (n) => n > 0, 'a positive number of ms or null');
  if (g.minConfidence !== undefined)
    out.minConfidence =
      g.minConfidence === null ? null : share(g.minConfidence, 'minConfidence (or null)');
  if (g.maxConfidenceDrop !== undefined)
    out.maxConfidenceDrop =
      g.maxConfidenceDrop === null
        ? null
        : share(g.maxConfidenceDrop, 'maxConfidenceDrop (or null)');
  return out;
}

/**
 * A rollout spec as sent (a request's `spec`, or a caller's object), checked field by
 * field: unknown fields, wrong types and values out of range are refused with a
 * RolloutError naming the field. Absent fields stay absent (ROLLOUT_DEFAULTS apply).
 */
export function parseRolloutSpec(v: unknown): RolloutSpec {
  const s = fieldsOf(v, 'spec', FIELDS);
  if (typeof s.model !== 'string' || !MODEL_RE.test(s.model))
    throw new RolloutError('spec.model must be a bundle of the registry, as name@version');
  const spec: RolloutSpec = { model: s.model };
  if (s.devices !== undefined) spec.devices = ids(s.devices, 'devices');
  if (s.groups !== undefined) spec.groups = ids(s.groups, 'groups');
  if (s.percent !== undefined)
    spec.percent = num(s.percent, 'percent', (n) => n > 0 && n <= 100, 'in (0, 100]');
  if (s.waves !== undefined) {
    if (!Array.isArray(s.waves) || s.waves.length === 0 || s.waves.length > MAX_WAVES)
      throw new RolloutError(`waves must be a list of 1..${MAX_WAVES} counts or shares`);
    spec.waves = s.waves.map(wave);
  }
  if (s.gates !== undefined) spec.gates = gatesOf(s.gates);
  if (s.minFrames !== undefined)
    spec.minFrames = num(
      s.minFrames,
      'minFrames',
      (n) => Number.isInteger(n) && n >= 1 && n <= 1_000_000,
      'a whole number, 1..1000000',
    );
  if (s.soakMs !== undefined) spec.soakMs = wait(s.soakMs, 'soakMs');
  if (s.applyTimeoutMs !== undefined)
    spec.applyTimeoutMs = wait(s.applyTimeoutMs, 'applyTimeoutMs');
  if (s.autoRollback !== undefined) {
    if (typeof s.autoRollback !== 'boolean')
      throw new RolloutError('autoRollback must be true or false');
    spec.autoRollback = s.autoRollback;
  }
  return spec;
}

/** A spec's settings with the defaults filled in. */
export function settingsOf(spec: RolloutSpec): {
  gates: HealthGates;
  minFrames: number;
  soakMs: number;
  applyTimeoutMs: number;
  autoRollback: boolean;
} {
  const d = ROLLOUT_DEFAULTS;
  return {
    gates: { ...d.gates, ...spec.gates },
    minFrames: spec.minFrames ?? d.minFrames,
    soakMs: spec.soakMs ?? d.soakMs,
    applyTimeoutMs: spec.applyTimeoutMs ?? d.applyTimeoutMs,
    autoRollback: spec.autoRollback ?? d.autoRollback,
  };
}

/** Cumulative wave sizes for `n` targets from counts (3) and shares ("50%"). */
export function waveSizes(waves: readonly (number | string)[], n: number): number[] {
  const out: number[] = [];
  for (const w of waves) {
    const m = SHARE_RE.exec(String(w));
    const size = m ? Math.ceil((Number(m[1]) / 100) * n) : Number(w);
    if (!Number.isFinite(size) || size < 1)
      throw new RolloutError(`bad wave ${shown(w)}: a count >= 1 or a share like "50%"`);
    const c = Math.min(n, size);
    if (c > (out[out.length - 1] ?? 0)) out.push(c);
  }
  if ((out[out.length - 1] ?? 0) < n) out.push(n);
  return out;
}

/**
 * The gates a wave fails, each as a sentence (none: healthy). `confidence` is the wave's
 * mean top-1 score on the new model, `baseline` the same devices' before the job.
 */
export function gateProblems(
  g: HealthGates,
  health: readonly WaveHealth[],
  confidence: number | null,
  baseline: number | null,
): string[] {
  const problems: string[] = [];
  const frames = health.reduce((a, h) => a + h.frames, 0);
  const errors = health.reduce((a, h) => a + h.errors, 0);
  const rate = frames ? errors / frames : 0;
  if (rate > g.maxErrorRate) problems.push(`error rate ${round(rate, 3)} > ${g.maxErrorRate}`);
  const lats = health.flatMap((h) => (h.latencyMsP95 === null ? [] : [h.latencyMsP95]));
  if (g.maxLatencyMs !== null && lats.some((l) => l > g.maxLatencyMs!))
    problems.push(`p95 edge latency ${Math.max(...lats)} ms > ${g.maxLatencyMs} ms`);
  if (g.minConfidence !== null && (confidence === null || confidence < g.minConfidence))
    problems.push(`mean confidence ${confidence ?? 'n/a'} < ${g.minConfidence}`);
  if (
    g.maxConfidenceDrop !== null &&
    confidence !== null &&
    baseline !== null &&
    baseline - confidence > g.maxConfidenceDrop
  )
    problems.push(
      `confidence fell from ${baseline} to ${confidence} (more than ${g.maxConfidenceDrop})`,
    );
  return problems;
}
