/**
 * Inference engines behind one small interface: onnxruntime-node (onnx.ts) and
 * TensorFlow.js (tfjs.ts: tfjs-node when installed, else tfjs + the wasm backend);
 * select.ts maps a configured engine name to one that is available here.
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

/** The model file format an engine loads: a bundle's `<role>` file (ONNX) or its
 * `<role>.tfjs` graph model (core/model/manifest.ts modelRole). */
export type ModelFormat = 'onnx' | 'tfjs';

export interface Engine {
  readonly name: string;
  /** Absent: 'onnx'. */
  readonly format?: ModelFormat;
  load(file: string, opts: EngineOptions): Promise<Session>;
}

/** Engine names a device setting or `--engine` takes (select.ts resolves them). */
export const ENGINE_NAMES = ['auto', 'onnx', 'tfjs', 'tfjs-node', 'tfjs-wasm'] as const;
export type EngineName = (typeof ENGINE_NAMES)[number];
