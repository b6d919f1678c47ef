/**
 * The agent's counters, kept from its events (bus.ts) alone: no other part writes them.
 * Accuracy is not here: the agent never sees labels; a demo or bench joins the `frame`
 * and `result` events with the labels it holds (accuracy.ts).
 */
import { pushBounded } from '../core/util/stats.js';
import type { Bus } from './bus.js';
import type { RateDecision } from './rate.js';

export interface AgentStats {
  sent: number;
  results: number;
  errors: number;
  lost: number;
  /** Source images that could not be decoded, skipped and counted. */
  skipped: number;
  frameBytes: number;
  payloadBytes: number;
  /** The newest 100,000 end-to-end latencies and head times. */
  latenciesMs: number[];
  headMs: number[];
  reconnects: number;
  /** Frames the outbox dropped (drop-oldest, when full), and frames it restored at start. */
  dropped: number;
  restored: number;
  /** Wall time of run(), for the achieved frame rate. */
  elapsedMs: number;
  /** Operating-point changes made by the rate controller, newest last (at most 1000). */
  pointChanges: (RateDecision & { at: number })[];
}

/** Counters that follow `bus`; `stats` is the live record. */
export function recordStats(bus: Bus): AgentStats {
  const s: AgentStats = {
    sent: 0,
    results: 0,
    errors: 0,
    lost: 0,
    skipped: 0,
    frameBytes: 0,
    payloadBytes: 0,
    latenciesMs: [],
    headMs: [],
    reconnects: 0,
    dropped: 0,
    restored: 0,
    elapsedMs: 0,
    pointChanges: [],
  };
  bus.on('frame', (f) => {
    s.sent++;
    s.frameBytes += f.frameBytes;
    s.payloadBytes += f.payloadBytes;
    pushBounded(s.headMs, f.headMs);
  });
  bus.on('result', (_r, latencyMs) => {
    s.results++;
    pushBounded(s.latenciesMs, latencyMs);
  });
  bus.on('error', () => s.errors++);
  bus.on('lost', () => s.lost++);
  bus.on('dropped', () => s.dropped++);
  bus.on('skipped', () => s.skipped++);
  bus.on('restored', (n) => (s.restored = n));
  bus.on('reconnecting', () => s.reconnects++);
  bus.on('point', (d) => pushBounded(s.pointChanges, d, 1000));
  return s;
}
