/**
 * The edge's ops, for operators (`splitfleet fleet rollout | rollback | jobs | models`, the
 * Node-RED command node): a request on `<base>/<fleet>/edge/<id>/request/<op>` is answered
 * on `.../response/<op>` (core/wire/rpc.ts: correlation ids, QoS, errors answered). Only
 * requests of the fleet the edge runs are served; a rollout's spec is checked field by
 * field before anything is queued.
 */
import { limitedLog } from '../../core/util/log.js';
import { OpError, serveOps, type EdgeOp, type OpHandler } from '../../core/wire/rpc.js';
import { edgeOpTopic } from '../../core/wire/topics.js';
import { subscribe, type EdgeBroker } from '../broker.js';
import type { Part } from '../bus.js';
import type { ModelRegistry } from './registry.js';
import { parseRolloutSpec } from './rollout-spec.js';
import type { RolloutManager } from './rollout.js';

export interface EdgeOpsOptions {
  broker: EdgeBroker;
  base: string;
  edgeId: string;
  rollouts: RolloutManager;
  registry: ModelRegistry;
  /** The fleet the edge runs now (requests of others are refused). */
  fleet: () => string;
}

/** The longest job id a rollback names. */
const MAX_JOB_ID = 128;

export class EdgeOps implements Part {
  readonly name = 'edge ops';
  private unsubscribe: (() => Promise<void>) | null = null;

  constructor(private readonly o: EdgeOpsOptions) {}

  async start(): Promise<void> {
    const { o } = this;
    const ops: Record<EdgeOp, OpHandler> = {
      rollout: (body) => Promise.resolve(o.rollouts.create(parseRolloutSpec(body.spec))),
      rollback: (body) => {
        const id = body.jobId;
        if (typeof id !== 'string' || id.length === 0 || id.length > MAX_JOB_ID)
          throw new OpError('jobId must be the id of a job (`fleet jobs`)');
        return o.rollouts.rollback(id);
      },
      jobs: () => Promise.resolve(o.rollouts.list()),
      models: () => Promise.resolve(o.registry.list()),
    };
    const serve = serveOps({
      base: o.base,
      ops,
      publish: (topic, payload) => o.broker.publish(topic, Buffer.from(payload)),
      warn: (what, fields) => limitedLog.warn(`edge-op:${what}`, fields, `edge ${what}`),
      fleet: o.fleet,
    });
    const requests = edgeOpTopic('+', o.edgeId, 'request', '+', o.base);
    this.unsubscribe = await subscribe(o.broker, requests, (p, payload) =>
      serve(p.topic, payload, p.retain),
    );
  }

  async stop(): Promise<void> {
    await this.unsubscribe?.();
  }
}
