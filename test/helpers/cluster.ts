/**
 * Test parts for a cluster of edge nodes over Redis (cluster.test.ts, faults.test.ts).
 */
import { connectAsync, type MqttClient } from 'mqtt';
import { Agent, type AgentOptions } from '../../device-agent/agent.js';
import type { Edge, EdgeOptions } from '../../edge-broker/edge.js';
import { parseError, parseResult } from '../../core/wire/messages.js';
import { deviceFilter, parseTopic } from '../../core/wire/topics.js';
import { testEdge } from './edge.js';
import { shippedModel } from './model.js';
import type { RedisServer } from './redis.js';

export const FLEET = 'cl';

/** Every answer a subscriber sees on `device/+/result|error`, per device and frame id. */
export class AnswerLog {
  readonly answers = new Map<string, { kind: 'result' | 'error'; edgeId: string | null }[]>();
  constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload) => {
      const t = parseTopic(topic);
      if (t?.kind !== 'device') return;
      const device = t.deviceId;
      const r = parseResult(payload);
      const e = r ? undefined : parseError(payload);
      const frameId = r?.frameId ?? e?.frameId;
      if (frameId === undefined || frameId === null) return;
      const key = `${device}/${frameId}`;
      const list = this.answers.get(key) ?? [];
      list.push({ kind: r ? 'result' : 'error', edgeId: r?.edgeId ?? e?.edgeId ?? null });
      this.answers.set(key, list);
    });
  }
  /** `session`: a client id and clean: false keep its subscriptions across a broker restart. */
  static async on(
    url: string,
    fleet: string,
    session: { clientId?: string; clean?: boolean } = {},
  ): Promise<AnswerLog> {
    const c = await connectAsync(url, { reconnectPeriod: 200, ...session });
    const log = new AnswerLog(c);
    await c.subscribeAsync([deviceFilter('result', fleet), deviceFilter('error', fleet)], {
      qos: 1,
    });
    return log;
  }
  /** Frame ids of `device` answered (duplicates collapsed). */
  ids(device: string): Set<number> {
    const out = new Set<number>();
    for (const k of this.answers.keys()) {
      const [d, id] = k.split('/');
      if (d === device) out.add(Number(id));
    }
    return out;
  }
  /** Answers beyond the first of a frame id (QoS 1 redeliveries, re-sends). */
  duplicates(): number {
    let n = 0;
    for (const l of this.answers.values()) n += l.length - 1;
    return n;
  }
  close(): Promise<void> {
    return this.client.endAsync();
  }
}

/** An agent of fleet `cl` that records the id of every frame answered, and how. */
export async function clusterAgent(
  deviceId: string,
  url: string,
  extra: Partial<AgentOptions> = {},
): Promise<{ agent: Agent; answered: Map<number, string> }> {
  const answered = new Map<number, string>();
  const agent = new Agent(
    {
      url,
      fleet: FLEET,
      deviceId,
      bundle: await shippedModel(),
      codec: 'split-q',
      point: 2,
      source: { source: 'sample', limit: 10 },
      fps: 0,
      reconnectPeriodMs: 200,
      maxReconnectMs: 1000,
      ...extra,
    },
    {
      result: (r) => answered.set(r.frameId, `result@${r.edgeId}`),
      error: (e) => e.frameId !== null && answered.set(e.frameId, `error:${e.code}`),
    },
  );
  return { agent, answered };
}

export const clusterNode = (
  redis: RedisServer,
  edgeId: string,
  extra: Partial<EdgeOptions> = {},
): Promise<Edge> =>
  testEdge({ edgeId, fleet: FLEET, redis: { url: redis.url, mode: 'cluster' }, ...extra });
