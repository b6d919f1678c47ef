/**
 * TensorFlow.js engines. Two backends, each an Engine:
 *
 * - `tfjs-node`: @tensorflow/tfjs-node (libtensorflow, native). An optional dependency:
 *   its install downloads libtensorflow, so it is absent on machines installed offline
 *   and on platforms without a prebuilt library. Its thread pools are libtensorflow's,
 *   sized once per process from TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS, which
 *   are set from the first load's `threads` unless already set.
 * - `tfjs-wasm`: @tensorflow/tfjs with @tensorflow/tfjs-backend-wasm (XNNPACK, SIMD when
 *   the runtime has it): pure JavaScript + WebAssembly, runs wherever Node runs.
 *   `setThreadsCount` is applied before the backend starts; Node has no Web Workers for
 *   the threaded wasm build, so there it runs one thread (getThreadsCount reports it).
 *
 * Both load the graph models the toolkit writes (models/splitfleet_models/export_tfjs.py):
 * `<role>.tfjs` (model.json) and its weights shard, read from the bundle folder and handed
 * to tfjs from memory (the same path for both backends; no fetch, no file:// handler).
 * tfjs keeps one active backend per process: a session switches to its own before it runs.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type * as TfModule from '@tensorflow/tfjs';
import type { Tensor } from '../tensor.js';
import type { Engine, EngineOptions, Session } from './engine.js';

type Tf = typeof TfModule;
type GraphModel = Awaited<ReturnType<Tf['loadGraphModel']>>;

export type TfjsEngineName = 'tfjs-node' | 'tfjs-wasm';

/** The optional native package; a variable specifier, so builds without it typecheck. */
const TFJS_NODE = '@tensorflow/tfjs-node';

interface Runtime {
  tf: Tf;
  /** tfjs backend name: 'tensorflow' (tfjs-node) or 'wasm'. */
  backend: string;
  /** Threads the backend runs with, as far as it reports them. */
  threads: number;
}

export class EngineUnavailable extends Error {
  override name = 'EngineUnavailable';
}

const runtimes = new Map<TfjsEngineName, Promise<Runtime>>();

async function startNode(threads: number): Promise<Runtime> {
  process.env.TF_NUM_INTRAOP_THREADS ??= String(threads);
  process.env.TF_NUM_INTEROP_THREADS ??= '1';
  let tf: Tf;
  try {
    // a CommonJS package: its API on the namespace (re-exports detected) or on default
    const mod = (await import(TFJS_NODE)) as Tf & { default?: Tf };
    tf = typeof mod.setBackend === 'function' ? mod : mod.default!;
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new EngineUnavailable(
      code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND'
        ? `${TFJS_NODE} is not installed (an optional dependency: \`npm install ${TFJS_NODE}\` downloads libtensorflow)`
        : `${TFJS_NODE} does not load: ${(e as Error).message}`,
    );
  }
  if (!(await tf.setBackend('tensorflow'))) {
    throw new EngineUnavailable(`${TFJS_NODE} loaded but its 'tensorflow' backend did not start`);
  }
  return {
    tf,
    backend: 'tensorflow',
    threads: Number(process.env.TF_NUM_INTRAOP_THREADS) || threads,
  };
}

async function startWasm(threads: number): Promise<Runtime> {
  let tf: Tf;
  let wasm: typeof import('@tensorflow/tfjs-backend-wasm');
  try {
    tf = await import('@tensorflow/tfjs');
    wasm = await import('@tensorflow/tfjs-backend-wasm');
  } catch (e) {
    throw new EngineUnavailable(
      `@tensorflow/tfjs-backend-wasm does not load: ${(e as Error).message}`,
    );
  }
  wasm.setThreadsCount(threads); // before the backend initializes; no effect without threads
  let ok = false;
  try {
    ok = await tf.setBackend('wasm');
  } catch (e) {
    throw new EngineUnavailable(`the tfjs wasm backend did not start: ${(e as Error).message}`);
  }
  if (!ok) throw new EngineUnavailable('the tfjs wasm backend did not start');
  return { tf, backend: 'wasm', threads: wasm.getThreadsCount() };
}

/** The runtime of `name`, started once per process (a failure is remembered too). */
export function tfjsRuntime(name: TfjsEngineName, threads = 1): Promise<Runtime> {
  let r = runtimes.get(name);
  if (!r) {
    r = name === 'tfjs-node' ? startNode(threads) : startWasm(threads);
    runtimes.set(name, r);
  }
  return r;
}

interface GraphModelJson {
  format?: string;
  generatedBy?: string;
  convertedBy?: string;
  signature?: object;
  modelTopology?: object;
  weightsManifest?: { paths: string[]; weights: TfModule.io.WeightsManifestEntry[] }[];
}

/** Shard names as the bundle lists files: plain names in the model's own folder. */
const SHARD_NAME = /^[A-Za-z0-9_.-]+$/;

async function readGraphModel(file: string): Promise<TfModule.io.ModelArtifacts> {
  const json = JSON.parse(await readFile(file, 'utf8')) as GraphModelJson;
  if (json.format !== 'graph-model' || !json.modelTopology || !json.weightsManifest) {
    throw new Error(`${file} is not a tfjs graph model (model.json with weightsManifest)`);
  }
  const weightSpecs: TfModule.io.WeightsManifestEntry[] = [];
  const shards: Buffer[] = [];
  for (const group of json.weightsManifest) {
    weightSpecs.push(...group.weights);
    for (const p of group.paths) {
      if (!SHARD_NAME.test(p) || p === '.' || p === '..') {
        throw new Error(`${file}: weights path ${JSON.stringify(p)} is not a file of the bundle`);
      }
      shards.push(await readFile(join(dirname(file), p)));
    }
  }
  const all = Buffer.concat(shards);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  return {
    modelTopology: json.modelTopology,
    weightSpecs,
    weightData,
    format: json.format,
    ...(json.generatedBy ? { generatedBy: json.generatedBy } : {}),
    ...(json.convertedBy ? { convertedBy: json.convertedBy } : {}),
    ...(json.signature ? { signature: json.signature } : {}),
  };
}

class TfjsSession implements Session {
  readonly inputName: string;
  readonly outputName: string;
  constructor(
    private readonly rt: Runtime,
    private readonly model: GraphModel,
  ) {
    const i = model.inputs[0]?.name;
    const o = model.outputs[0]?.name;
    if (!i || !o || model.inputs.length !== 1 || model.outputs.length !== 1) {
      throw new Error('model needs one input and one output');
    }
    this.inputName = i;
    this.outputName = o;
  }

  async run(input: Tensor): Promise<Tensor> {
    const { tf } = this.rt;
    if (tf.getBackend() !== this.rt.backend) await tf.setBackend(this.rt.backend);
    const x = tf.tensor(input.data, input.shape, 'float32');
    try {
      const y = this.model.execute(x) as TfModule.Tensor;
      try {
        if (y.dtype !== 'float32') throw new Error('model output is not float32');
        return { data: (await y.data()) as Float32Array, shape: [...y.shape] };
      } finally {
        y.dispose();
      }
    } finally {
      x.dispose();
    }
  }

  close(): Promise<void> {
    this.model.dispose();
    return Promise.resolve();
  }
}

function tfjsEngine(name: TfjsEngineName): Engine & { name: TfjsEngineName } {
  return {
    name,
    format: 'tfjs',
    async load(file: string, opts: EngineOptions): Promise<Session> {
      const rt = await tfjsRuntime(name, opts.threads);
      const { tf } = rt;
      if (tf.getBackend() !== rt.backend) await tf.setBackend(rt.backend);
      const model = await tf.loadGraphModel(tf.io.fromMemory(await readGraphModel(file)));
      return new TfjsSession(rt, model);
    },
  };
}

export const tfjsNodeEngine = tfjsEngine('tfjs-node');
export const tfjsWasmEngine = tfjsEngine('tfjs-wasm');

/** Threads the started runtime of `name` reports (wasm: getThreadsCount). */
export async function tfjsThreads(name: TfjsEngineName): Promise<number> {
  return (await tfjsRuntime(name)).threads;
}
