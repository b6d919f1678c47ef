/**
 * What the decoder pool (pool.ts) and its decoder processes (host.ts) say to each other
 * over the child's IPC channel ('advanced' serialization: typed arrays travel as bytes,
 * not as JSON). Every message is checked on receipt: a decoder process is a separate
 * program that may be broken, and what it sends is not trusted to have the right shape.
 */
import {
  ERROR_CODES,
  RESULT_VERSION,
  type ErrorCode,
  type ResultMessage,
} from '../../core/wire/messages.js';
import type { DecodeJob } from './decoder.js';

/** What a decoder process is started with (its one argument, as JSON: it is there before
 * the process listens to its channel, where a message sent that early could be missed). */
export interface HostInit {
  bundleDirs: string[];
  /** onnxruntime intra-op threads of the process. */
  threads: number;
  edgeId: string;
  /** The decoder's index in the pool (shown in its logs). */
  index: number;
  /** A module the process imports before it loads its networks (see PoolOptions.preload). */
  preload: string | null;
}

export type HostRequest = { type: 'batch'; id: number; jobs: DecodeJob[] } | { type: 'close' };

export type HostOutcome =
  | { result: ResultMessage }
  | { error: { code: ErrorCode; message: string; frameId: number | null } };

export type HostAnswer =
  | { type: 'ready' }
  | { type: 'init-error'; message: string }
  | { type: 'done'; id: number; out: HostOutcome[] };

const CODES: ReadonlySet<string> = new Set<string>(ERROR_CODES);

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function isOutcome(v: unknown): v is HostOutcome {
  if (!isObj(v)) return false;
  if ('result' in v) {
    const r = v.result;
    return (
      isObj(r) &&
      r.v === RESULT_VERSION &&
      typeof r.frameId === 'number' &&
      typeof r.classIndex === 'number' &&
      typeof r.score === 'number' &&
      Array.isArray(r.topk) &&
      isObj(r.latency)
    );
  }
  const e = v.error;
  return (
    isObj(e) &&
    typeof e.code === 'string' &&
    CODES.has(e.code) &&
    typeof e.message === 'string' &&
    (e.frameId === null || typeof e.frameId === 'number')
  );
}

/** A decoder process's message, or null when it has not the shape of one. */
export function parseAnswer(m: unknown): HostAnswer | null {
  if (!isObj(m)) return null;
  if (m.type === 'ready') return { type: 'ready' };
  if (m.type === 'init-error') {
    return { type: 'init-error', message: typeof m.message === 'string' ? m.message : '?' };
  }
  if (m.type === 'done' && typeof m.id === 'number' && Array.isArray(m.out)) {
    const out: unknown[] = m.out;
    return out.every(isOutcome) ? { type: 'done', id: m.id, out } : null;
  }
  return null;
}

function isJob(v: unknown): v is DecodeJob {
  if (!isObj(v) || typeof v.deviceId !== 'string' || typeof v.receivedAt !== 'number') {
    return false;
  }
  const f = v.frame;
  return isObj(f) && typeof f.frameId === 'number' && f.payload instanceof Uint8Array;
}

/** The start-up argument of a decoder process, or null when it is not one. */
export function parseInit(arg: string | undefined): HostInit | null {
  let v: unknown;
  try {
    v = JSON.parse(arg ?? '');
  } catch {
    return null;
  }
  return isInit(v) ? v : null;
}

function isInit(v: unknown): v is HostInit {
  return (
    isObj(v) &&
    Array.isArray(v.bundleDirs) &&
    v.bundleDirs.every((d) => typeof d === 'string') &&
    typeof v.threads === 'number' &&
    typeof v.edgeId === 'string' &&
    typeof v.index === 'number' &&
    (v.preload === null || typeof v.preload === 'string')
  );
}

/** The pool's message to a decoder process, or null when it has not the shape of one
 * (frames were checked by the edge before they were queued). */
export function parseRequest(m: unknown): HostRequest | null {
  if (!isObj(m)) return null;
  if (m.type === 'close') return { type: 'close' };
  if (m.type === 'batch' && typeof m.id === 'number' && Array.isArray(m.jobs)) {
    const jobs: unknown[] = m.jobs;
    return jobs.every(isJob) ? { type: 'batch', id: m.id, jobs } : null;
  }
  return null;
}
