/**
 * From a configured engine name to an Engine that runs here, and from a bundle's network
 * role to the file that engine loads.
 *
 *   onnx       onnxruntime-node (the reference; the edge always runs it)
 *   tfjs       TensorFlow.js: tfjs-node when installed, else tfjs + the wasm backend
 *   tfjs-node  TensorFlow.js on libtensorflow (@tensorflow/tfjs-node, optional)
 *   tfjs-wasm  TensorFlow.js on its wasm backend (always installed)
 *   auto       the first that runs of onnx, tfjs-node, tfjs-wasm
 *
 * When the named engine does not run here the next one of its fallback chain is taken
 * and the log says which was asked for, why it is unavailable and which runs instead. A
 * bundle with no tfjs export is refused under a tfjs engine (loadNetwork).
 */
import type { Bundle } from '../model/load.js';
import { modelRole } from '../model/manifest.js';
import { log } from '../util/log.js';
import { ENGINE_NAMES, type EngineName } from './engine.js';
import type { Engine, EngineOptions, Session } from './engine.js';

export { ENGINE_NAMES, type EngineName };
/** The engines themselves (what `auto` and `tfjs` resolve to). */
export type ConcreteEngine = 'onnx' | 'tfjs-node' | 'tfjs-wasm';

/** Which engines to try, in order, for each configured name. */
export const FALLBACKS: Readonly<Record<EngineName, readonly ConcreteEngine[]>> = {
  auto: ['onnx', 'tfjs-node', 'tfjs-wasm'],
  onnx: ['onnx', 'tfjs-node', 'tfjs-wasm'],
  tfjs: ['tfjs-node', 'tfjs-wasm', 'onnx'],
  'tfjs-node': ['tfjs-node', 'tfjs-wasm', 'onnx'],
  'tfjs-wasm': ['tfjs-wasm', 'tfjs-node', 'onnx'],
};

export function isEngineName(s: string): s is EngineName {
  return (ENGINE_NAMES as readonly string[]).includes(s);
}

export function parseEngineName(s: string): EngineName {
  if (!isEngineName(s)) {
    throw new Error(`unknown engine ${JSON.stringify(s)}; one of ${ENGINE_NAMES.join(', ')}`);
  }
  return s;
}

const probes = new Map<ConcreteEngine, Promise<Engine>>();

/** The engine `name`, loaded once per process; rejects with the reason it cannot run.
 * `threads` sizes a tfjs runtime when this is its first start (fixed from then on). */
export function concreteEngine(name: ConcreteEngine, threads = 1): Promise<Engine> {
  let p = probes.get(name);
  if (!p) {
    p = (async (): Promise<Engine> => {
      if (name === 'onnx') {
        try {
          return (await import('./onnx.js')).onnxEngine;
        } catch (e) {
          throw new Error(`onnxruntime-node does not load: ${(e as Error).message}`);
        }
      }
      const t = await import('./tfjs.js');
      await t.tfjsRuntime(name, threads); // throws EngineUnavailable with the reason
      return name === 'tfjs-node' ? t.tfjsNodeEngine : t.tfjsWasmEngine;
    })();
    probes.set(name, p);
  }
  return p;
}

/** Whether `name` runs here: null, or why not. */
export async function engineUnavailable(name: ConcreteEngine): Promise<string | null> {
  try {
    await concreteEngine(name);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

export interface EngineChoice {
  engine: Engine;
  requested: EngineName;
  /** Engines tried before this one and why each does not run here. */
  skipped: { engine: ConcreteEngine; why: string }[];
}

const announced = new Set<string>();

/**
 * The engine for configured `name`: the first of its fallback chain that runs here. A
 * fallback is logged (once per process and name) with the reason; none running throws.
 * `threads` sizes engines whose thread pools are fixed when they start (tfjs).
 */
export async function selectEngine(name: EngineName, threads = 1): Promise<EngineChoice> {
  const skipped: EngineChoice['skipped'] = [];
  for (const c of FALLBACKS[name]) {
    try {
      const engine = await concreteEngine(c, threads);
      const key = `${name}->${c}`;
      if (skipped.length > 0 && !announced.has(key)) {
        announced.add(key);
        const why = skipped.map((s) => `${s.engine}: ${s.why}`).join('; ');
        const msg =
          name === 'auto' || (name === 'tfjs' && c !== 'onnx')
            ? `engine ${name}: using ${c} (${why})`
            : `engine ${name} is not available here (${why}); falling back to ${c}`;
        if (name === 'auto' || name === 'tfjs') log.info({ engine: name, using: c }, msg);
        else log.warn({ engine: name, using: c }, msg);
      }
      return { engine, requested: name, skipped };
    } catch (e) {
      skipped.push({ engine: c, why: (e as Error).message });
    }
  }
  throw new Error(
    `no inference engine runs here: ${skipped.map((s) => `${s.engine}: ${s.why}`).join('; ')}`,
  );
}

/** A bundle that the chosen engine cannot run, and what to do instead. */
export class EngineMismatch extends Error {
  override name = 'EngineMismatch';
}

/**
 * Load network `role` of `bundle` with `engine`: its ONNX file, or (a tfjs engine) its
 * tfjs export. A bundle without a tfjs export of that role (an ONNX-only bundle: its
 * operators are outside the tfjs exporter's set) is refused under a tfjs engine, saying
 * which bundle, that it has no TensorFlow.js weights and which engine runs it.
 */
export async function loadNetwork(
  engine: Engine,
  bundle: Bundle,
  role: string,
  opts: EngineOptions,
): Promise<{ session: Session; engine: Engine }> {
  const format = engine.format ?? 'onnx';
  if (format !== 'onnx' && !bundle.manifest.files[modelRole(role, format)]) {
    const m = bundle.manifest;
    throw new EngineMismatch(
      `bundle ${m.name}@${m.version} has no TensorFlow.js weights for its ${role} (ONNX only), so engine ${engine.name} cannot run it: ` +
        `use engine onnx (or auto), or export it with python3 -m splitfleet_models.export_tfjs if its operators allow`,
    );
  }
  return { session: await engine.load(bundle.file(modelRole(role, format)), opts), engine };
}
