/**
 * Inference engines behind one small interface. onnxruntime-node is the first; the tfjs
 * engine joins it later (issue: device runtime).
 */
import type { Tensor } from '../tensor.js';

export interface EngineOptions {
  /** Threads inside one operator (intra-op). Device encoders use 1 (a Pi core). */
  threads: number;
}

export interface Session {
  /** Input shape with -1 for the batch axis, as the model file declares it. */
  readonly inputName: string;
  readonly outputName: string;
  /** Run one batch: input [N, ...] -> output [N, ...]. */
  run(input: Tensor): Promise<Tensor>;
  close(): Promise<void>;
}

export interface Engine {
  readonly name: string;
  load(file: string, opts: EngineOptions): Promise<Session>;
}
