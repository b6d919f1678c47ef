/**
 * Request/response over MQTT, the one implementation for every op of the project (a
 * device's ops, an edge's ops), on both sides.
 *
 * A request goes to `<base>/<fleet>/<edge|device>/<id>/request/<op>` as a JSON object with
 * a correlation `id`; its answer comes back on `.../response/<op>` as an OpResponse
 * `{status, data, error, id, ts}` with the same id.
 *
 * QoS policy: requests are sent at QoS 0 and answers at QoS 1. A request is for now: one
 * that timed out must never run later because a reconnect re-sent it, so the caller, not
 * the session, retries. Requests are never retained (the broker's ACL refuses it, and a
 * server ignores a retained one: it would run again at every restart). The answer to a
 * request that cannot be served (unknown op, unreadable body, a handler that throws) is
 * an error answer on the response topic of the request as sent, never silence.
 */
import { randomUUID } from 'node:crypto';
import type { OpResponse } from './messages.js';
import { parseOpTopic } from './topics.js';

export const REQUEST_QOS = 0;
export const RESPONSE_QOS = 1;
/** The longest error text an answer carries. */
const MAX_ERROR = 1024;

/** The ops of a device's agent and of an edge (the one list of each). */
export const DEVICE_OPS = ['ping', 'get-config', 'restart-pipeline'] as const;
export const EDGE_OPS = ['rollout', 'rollback', 'jobs', 'models', 'set-config'] as const;
export type DeviceOp = (typeof DEVICE_OPS)[number];
export type EdgeOp = (typeof EDGE_OPS)[number];

/** An error a handler throws to answer with its message, without logging it. */
export class OpError extends Error {
  override name = 'OpError';
  constructor(
    message: string,
    /** Data to send with the error answer. */
    readonly data: unknown = null,
  ) {
    super(message);
  }
}

/** A request's body: a JSON object; `id` is the caller's correlation id. */
export type OpBody = Readonly<Record<string, unknown>>;
export type OpHandler = (body: OpBody) => Promise<unknown>;

export interface ServeOptions<Op extends string> {
  base: string;
  /** Handlers by op; a request for any other op gets an error naming the ops. */
  ops: Readonly<Record<Op, OpHandler>>;
  /** Publish an answer (at RESPONSE_QOS); must not reject. */
  publish: (topic: string, payload: string) => Promise<void>;
  /** Called for a request (a handler's unexpected failure, a retained request); rate-limit it. */
  warn?: (what: string, fields: Record<string, unknown>) => void;
  /** Refuse requests of other fleets (their answer says so); null: any. */
  fleet?: () => string | null;
}

/** The handler of an op server: give it every message on `.../request/+`; it never throws
 * and never rejects. */
export function serveOps<Op extends string>(
  o: ServeOptions<Op>,
): (topic: string, payload: Uint8Array | string, retained?: boolean) => void {
  const names = Object.keys(o.ops) as Op[];
  const has = (op: string): op is Op => (names as string[]).includes(op);
  return (topic, payload, retained = false) => {
    const t = parseOpTopic(topic, o.base);
    if (!t || t.dir !== 'request') return;
    if (retained) {
      o.warn?.('retained request ignored', { topic });
      return;
    }
    let id: string | null = null;
    const answer = (status: 'ok' | 'error', data: unknown, error: string | null) => {
      const body: OpResponse = { status, data, error, id, ts: Date.now() };
      return o.publish(t.respondOn, JSON.stringify(body));
    };
    const run = async (): Promise<void> => {
      let body: OpBody;
      try {
        const text = typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8');
        const v: unknown = text.length ? JSON.parse(text) : {};
        if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error();
        body = v as OpBody;
        if (body.id !== undefined) id = String(body.id).slice(0, 128);
      } catch {
        return answer('error', null, 'request body is not a JSON object');
      }
      if (!has(t.op)) {
        const shown = JSON.stringify(t.op.slice(0, 64));
        return answer('error', null, `unknown op ${shown}; ops: ${names.join(', ')}`);
      }
      const fleet = o.fleet?.() ?? null;
      if (fleet !== null && t.fleet !== fleet) {
        return answer('error', null, `this edge runs fleet ${fleet}, not ${t.fleet.slice(0, 64)}`);
      }
      try {
        return await answer('ok', await o.ops[t.op](body), null);
      } catch (e) {
        const message = (e instanceof Error ? e.message : String(e)).slice(0, MAX_ERROR);
        if (!(e instanceof OpError)) o.warn?.('op failed', { op: t.op, err: message });
        return answer('error', e instanceof OpError ? e.data : null, message);
      }
    };
    run().catch((e: unknown) => o.warn?.('op not answered', { op: t.op, err: String(e) }));
  };
}

/** What the requesting side needs of an MQTT client (mqtt.js's MqttClient has it). */
export interface RpcClient {
  on(event: 'message', fn: (topic: string, payload: Buffer) => void): unknown;
  removeListener(event: 'message', fn: (topic: string, payload: Buffer) => void): unknown;
  subscribe(topic: string, opts: { qos: 0 | 1 | 2 }, cb: (err?: Error | null) => void): unknown;
  publish(
    topic: string,
    payload: string,
    opts: { qos: 0 | 1 | 2; retain?: boolean },
    cb: (err?: Error) => void,
  ): unknown;
}

/** Parse an answer; undefined when it is not one. */
export function parseOpResponse(payload: Uint8Array | string): OpResponse | undefined {
  try {
    const text = typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8');
    const v: unknown = JSON.parse(text);
    if (typeof v !== 'object' || v === null) return undefined;
    const r = v as Record<string, unknown>;
    if (r.status !== 'ok' && r.status !== 'error') return undefined;
    if (r.error !== null && typeof r.error !== 'string') return undefined;
    if (r.id !== null && typeof r.id !== 'string') return undefined;
    return {
      status: r.status,
      data: r.data ?? null,
      error: r.error,
      id: r.id,
      ts: typeof r.ts === 'number' ? r.ts : 0,
    };
  } catch {
    return undefined;
  }
}

/**
 * Send one request on `requestTopic` (a concrete `.../request/<op>`) and resolve with its
 * answer (status ok or error), or reject after `timeoutMs` with no answer.
 */
export function request(
  client: RpcClient,
  requestTopic: string,
  body: OpBody = {},
  timeoutMs = 10_000,
): Promise<OpResponse> {
  const responseTopic = requestTopic.replace(/\/request\/([^/]+)$/, '/response/$1');
  if (responseTopic === requestTopic) {
    return Promise.reject(new Error(`not a request topic: ${requestTopic}`));
  }
  const id = randomUUID();
  return new Promise<OpResponse>((resolve, reject) => {
    const onMessage = (topic: string, payload: Buffer) => {
      if (topic !== responseTopic) return;
      const r = parseOpResponse(payload);
      if (r?.id !== id) return;
      done();
      resolve(r);
    };
    const done = () => {
      clearTimeout(timer);
      client.removeListener('message', onMessage);
    };
    const fail = (e: Error) => {
      done();
      reject(e);
    };
    const timer = setTimeout(() => {
      const op = requestTopic.slice(requestTopic.lastIndexOf('/') + 1);
      const to = requestTopic.slice(0, requestTopic.lastIndexOf('/request/'));
      fail(new Error(`no answer to ${op} from ${to} within ${timeoutMs} ms`));
    }, timeoutMs);
    client.on('message', onMessage);
    client.subscribe(responseTopic, { qos: RESPONSE_QOS }, (err) => {
      if (err) return fail(err);
      client.publish(requestTopic, JSON.stringify({ ...body, id }), { qos: REQUEST_QOS }, (e) => {
        if (e) fail(e);
      });
    });
  });
}

/** The data of an answer, or throw its error. */
export function dataOf<T>(r: OpResponse, what = 'request'): T {
  if (r.status !== 'ok') throw new Error(r.error ?? `${what} failed`);
  return r.data as T;
}
