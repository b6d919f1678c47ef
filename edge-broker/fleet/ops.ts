/**
 * The edge's ops, for operators (`splitfleet fleet rollout | rollback | jobs | models |
 * set`, the Node-RED command node and dashboard): a request on
 * `<base>/<fleet>/edge/<id>/request/<op>` is answered on `.../response/<op>`
 * (core/wire/rpc.ts: correlation ids, QoS, errors answered). Only requests of the fleet
 * the edge runs are served, and only logins that may write the fleet's topics (an
 * operator: core/wire/topics.ts accessFilters) can send one; a rollout's spec and a
 * set-config's change are checked field by field before anything is done.
 */
import { limitedLog } from '../../core/util/log.js';
import { OpError, serveOps, type EdgeOp, type OpHandler } from '../../core/wire/rpc.js';
import { edgeOpTopic, isValidId } from '../../core/wire/topics.js';
import { subscribe, type EdgeBroker } from '../broker.js';
import type { Part } from '../bus.js';
import {
  OVERRIDE_KEYS,
  overrideSettings,
  type OverrideChange,
} from '../../fleet-config/overrides.js';
import type { FleetConfigs } from './configs.js';
import type { ModelRegistry } from './registry.js';
import { parseRolloutSpec } from './rollout-spec.js';
import type { RolloutManager } from './rollout.js';

export interface EdgeOpsOptions {
  broker: EdgeBroker;
  base: string;
  edgeId: string;
  rollouts: RolloutManager;
  registry: ModelRegistry;
  configs: FleetConfigs;
  /** The fleet the edge runs now (requests of others are refused). */
  fleet: () => string;
}

/** The longest job id a rollback names. */
const MAX_JOB_ID = 128;

/** The fields of a set-config's body (`id`: the caller's correlation id). */
const SET_CONFIG_FIELDS = ['device', 'group', 'set', 'id'];

/** A set-config's body, checked field by field: exactly one of `device` and `group`,
 * and `set` with codec, point or fps, each null to remove its override
 * (fleet-config/overrides.ts); their ranges are the fleet file's checks (configs.ts). Any
 * other field is refused (a misspelt one would otherwise be ignored). */
export function parseSetConfig(body: Readonly<Record<string, unknown>>): OverrideChange {
  const extra = Object.keys(body).filter((k) => !SET_CONFIG_FIELDS.includes(k));
  if (extra.length > 0)
    throw new OpError(
      `unknown field ${JSON.stringify(extra[0]!.slice(0, 64))}; fields: device or group, set`,
    );
  const { device, group, set } = body;
  const id = (v: unknown, what: string): string => {
    if (typeof v !== 'string' || !isValidId(v))
      throw new OpError(`${what} must be an id (1..64 of [A-Za-z0-9_.-])`);
    return v;
  };
  if ((device === undefined) === (group === undefined))
    throw new OpError('name exactly one of device and group');
  const target =
    device !== undefined ? { device: id(device, 'device') } : { group: id(group, 'group') };
  let settings: OverrideChange['set'];
  try {
    settings = overrideSettings(set, 'set', true);
  } catch (e) {
    throw new OpError(e instanceof Error ? e.message : String(e));
  }
  if (Object.keys(settings).length === 0)
    throw new OpError(`set names none of ${OVERRIDE_KEYS.join(', ')}`);
  return { target, set: settings };
}

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
      'set-config': (body) => o.configs.setConfig(parseSetConfig(body)),
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
