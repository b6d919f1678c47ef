/**
 * Read and check a fleet file on a worker thread: the same result and the same problems
 * as loadFleet (load.ts), while the caller's event loop keeps serving (the edge checks
 * the file again at every edit, and a large fleet takes seconds).
 *
 * This module is also the thread's code: started as a worker, it checks the file named
 * in its workerData and posts the outcome back.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { FleetConfigError, loadFleet, type FleetContext, type FleetProblem } from './load.js';
import type { FleetFile } from './schema.js';

interface Job {
  file: string;
  ctx: FleetContext;
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
export function loadFleetInWorker(file: string, ctx: FleetContext = {}): Promise<FleetFile> {
  const job: Job = {
    file,
    ctx: {
      ...(ctx.codecs ? { codecs: [...ctx.codecs] } : {}),
      ...(ctx.models ? { models: [...ctx.models] } : {}),
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
    return { kind: 'ok', fleet: await loadFleet(job.file, job.ctx) };
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
  return { file, ctx: { ...(codecs ? { codecs } : {}), ...(models ? { models } : {}) } };
}

const job = isMainThread ? undefined : jobOf(workerData);
if (job && parentPort) {
  const port = parentPort;
  await runJob(job).then((outcome) => port.postMessage(outcome));
}
