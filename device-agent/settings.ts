/**
 * The settings an agent runs: set at start from its options, then changed live by the
 * edge's configs (config.ts, their one owner) and by the rate controller (the point).
 */
import type { EngineName } from '../core/engine/select.js';
import type { Bundle } from '../core/model/bundle.js';

export interface AgentSettings {
  /** The bundle the head runs. */
  readonly bundle: Bundle;
  readonly codec: string;
  readonly point: number;
  /** Frames per second; 0 sends as fast as the in-flight window allows. */
  readonly fps: number;
  /** End-to-end latency goal (rate.ts picks the point); null: the fixed point. */
  readonly latencyGoalMs: number | null;
  /** The edge's cap on the feature bit rate, kbit/s; null: none. */
  readonly maxKbps: number | null;
  /** Inference engine of the head (core/engine/select.ts). */
  readonly engine: EngineName;
  /** The edge's config in force; null: the agent's start-up options. */
  readonly configId: string | null;
}
