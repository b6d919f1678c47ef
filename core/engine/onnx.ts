import * as ort from 'onnxruntime-node';
import type { Tensor } from '../tensor.js';
import type { Engine, EngineOptions, Session } from './engine.js';

class OnnxSession implements Session {
  readonly inputName: string;
  readonly outputName: string;
  constructor(private readonly s: ort.InferenceSession) {
    const i = s.inputNames[0];
    const o = s.outputNames[0];
    if (!i || !o) throw new Error('model needs one input and one output');
    this.inputName = i;
    this.outputName = o;
  }

  async run(input: Tensor): Promise<Tensor> {
    const feeds = { [this.inputName]: new ort.Tensor('float32', input.data, input.shape) };
    const out = (await this.s.run(feeds))[this.outputName];
    if (!out || out.type !== 'float32') throw new Error('model output is not float32');
    return { data: out.data as Float32Array, shape: [...out.dims] };
  }

  async close(): Promise<void> {
    await this.s.release();
  }
}

export const onnxEngine: Engine = {
  name: 'onnx',
  format: 'onnx',
  async load(file: string, opts: EngineOptions): Promise<Session> {
    const s = await ort.InferenceSession.create(file, {
      intraOpNumThreads: opts.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      executionProviders: ['cpu'],
    });
    return new OnnxSession(s);
  },
};
