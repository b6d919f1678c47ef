/**
 * Read and check a fleet file on a worker thread: the same result and the same problems
 * as loadFleet (load.ts), while the caller's event loop keeps serving (the edge checks
 * the file again at every edit, and a large fleet takes seconds).
 *
 * This module is also the thread's code: started as a worker, it checks the file named
 * in its workerData and posts the outcome back.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { FleetConfigError, loadFleet, type FleetProblem } from './load.js';
import { loadPlanSources, type PlanBundleDir } from './plans.js';
import type { FleetFile } from './schema.js';

/** What the thread checks a file against: names, and bundle folders for the plans. */
export interface WorkerContext {
  codecs?: readonly string[];
  models?: readonly string[];
  /** Bundle folders each device's model, codec and point must fit (plans.ts). */
  bundles?: { dirs: readonly PlanBundleDir[]; where?: string };
}

interface Job {
  file: string;
  ctx: WorkerContext;
}

type Outcome =
  | { kind: 'ok'; fleet: FleetFile }
  | { kind: 'problems'; problems: FleetProblem[] }
  | { kind: 'error'; message: string };

// this module beside itself: built .js, or .ts when run from source under tsx (tests),
// whose loader hooks a worker thread does not inherit: it registers them first
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const THREAD_CODE = FROM_SOURCE
  ? `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(import.meta.url)}); })`
  : `import(${JSON.stringify(import.meta.url)})`;

/** loadFleet on a worker thread: resolves to the checked fleet file, or rejects with the
 * FleetConfigError loadFleet would throw (every problem with its line and column). */
export function loadFleetInWorker(file: string, ctx: WorkerContext = {}): Promise<FleetFile> {
  const job: Job = {
    file,
    ctx: {
      ...(ctx.codecs ? { codecs: [...ctx.codecs] } : {}),
      ...(ctx.models ? { models: [...ctx.models] } : {}),
      ...(ctx.bundles
        ? {
            bundles: {
              dirs: ctx.bundles.dirs.map((d) => ({ dir: d.dir, staged: Boolean(d.staged) })),
              ...(ctx.bundles.where ? { where: ctx.bundles.where } : {}),
            },
          }
        : {}),
    },
  };
  return new Promise<FleetFile>((resolve, reject) => {
    const worker = new Worker(THREAD_CODE, {
      eval: true,
      workerData: { fleetJob: job },
      name: 'fleet-check',
    });
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      fn();
    };
    worker.once('message', (m: Outcome) => {
      settle(() => {
        if (m.kind === 'ok') resolve(m.fleet);
        else if (m.kind === 'problems') reject(new FleetConfigError(m.problems));
        else reject(new Error(m.message));
      });
    });
    worker.once('error', (e) => settle(() => reject(e)));
    worker.once('exit', (code) =>
      settle(() => reject(new Error(`fleet check thread exited (${code}) without an answer`))),
    );
  });
}

/** The thread's side: check the file, post the outcome. */
async function runJob(job: Job): Promise<Outcome> {
  try {
    const { codecs, models, bundles } = job.ctx;
    const plans = bundles ? await loadPlanSources(bundles.dirs, bundles.where) : undefined;
    return { kind: 'ok', fleet: await loadFleet(job.file, { codecs, models, plans }) };
  } catch (e) {
    if (e instanceof FleetConfigError) return { kind: 'problems', problems: e.problems };
    return { kind: 'error', message: e instanceof Error ? e.message : String(e) };
  }
}

/** The job in a thread's workerData, checked (undefined: this thread is not a fleet check). */
function jobOf(data: unknown): Job | undefined {
  if (typeof data !== 'object' || data === null) return undefined;
  const j: unknown = (data as Record<string, unknown>).fleetJob;
  if (typeof j !== 'object' || j === null) return undefined;
  const { file, ctx } = j as Record<string, unknown>;
  if (typeof file !== 'string' || typeof ctx !== 'object' || ctx === null) return undefined;
  const names = (v: unknown): string[] | undefined =>
    Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined;
  const c = ctx as Record<string, unknown>;
  const codecs = names(c.codecs);
  const models = names(c.models);
  const b = c.bundles;
  let bundles: WorkerContext['bundles'];
  if (typeof b === 'object' && b !== null) {
    const { dirs, where } = b as Record<string, unknown>;
    if (!Array.isArray(dirs)) return undefined;
    const list: PlanBundleDir[] = [];
    for (const d of dirs as unknown[]) {
      if (typeof d !== 'object' || d === null) return undefined;
      const { dir, staged } = d as Record<string, unknown>;
      if (typeof dir !== 'string') return undefined;
      list.push({ dir, staged: staged === true });
    }
    bundles = { dirs: list, ...(typeof where === 'string' ? { where } : {}) };
  }
  return {
    file,
    ctx: {
      ...(codecs ? { codecs } : {}),
      ...(models ? { models } : {}),
      ...(bundles ? { bundles } : {}),
    },
  };
}

const job = isMainThread ? undefined : jobOf(workerData);
if (job && parentPort) {
  const port = parentPort;
  await runJob(job).then((outcome) => port.postMessage(outcome));
}
