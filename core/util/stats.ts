/** Small statistics helpers used by the agent, the demo and the benchmarks. */

/** Nearest-rank percentile (p in 0..100) of unsorted values; NaN for none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))]!;
}

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Append to a sample window that keeps at most `max` of the newest values. */
export function pushBounded<T>(values: T[], v: T, max = 100_000): void {
  if (values.length >= max) values.splice(0, values.length - max + 1);
  values.push(v);
}
