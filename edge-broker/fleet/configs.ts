/**
 * The fleet's configs: the fleet file in force, the operator's overrides on top of it
 * (fleet-config/overrides.ts, the `set-config` op), the rollout jobs' pins on top of
 * those (rollout.ts), the effective config of each device published retained on
 * `.../device/<id>/config`, and what each device answers on `.../response/config`:
 * the config it runs, or the one it refused and why (logged, once a minute per device).
 *
 * A file (with its overrides) comes into force only when every device's model, codec
 * and point make a split plan of a bundle this edge serves (fleet-config/plans.ts):
 * a device is never sent a config the edge cannot decode.
 *
 * The one owner of the fleet file in force, the overrides, the config states and the
 * rollout jobs.
 */
import type { Registry } from 'prom-client';
import { join } from 'node:path';
import { background, limitedLog, log } from '../../core/util/log.js';
import { bundleRefString } from '../../core/wire/ota.js';
import { CONFIG_VERSION, type ConfigAck, type ConfigMessage } from '../../core/wire/messages.js';
import { OpError, parseOpResponse } from '../../core/wire/rpc.js';
import { deviceOpTopic, deviceTopic, edgeTopic, parseOpTopic } from '../../core/wire/topics.js';
import { codecNames } from '../../core/codec/registry.js';
import { configIdWithBundle, effectiveConfig } from '../../fleet-config/effective.js';
import { checkFleet, FleetConfigError, formatProblem } from '../../fleet-config/load.js';
import {
  applyOverrides,
  emptyOverrides,
  overriddenFor,
  saveOverrides,
  withChange,
  type OverrideChange,
  type OverrideKey,
  type Overrides,
} from '../../fleet-config/overrides.js';
import { listed } from '../../fleet-config/plans.js';
import type { DeviceSettings, FleetFile } from '../../fleet-config/schema.js';
import { publishJson, subscribe, type EdgeBroker } from '../broker.js';
import type { EdgeBus, Part } from '../bus.js';
import type { ModelRegistry } from './registry.js';
import { rolloutLeadership } from './leader.js';
import { RolloutManager } from './rollout.js';

/** What the edge wants a device to run and what the device says it runs. */
export interface DeviceConfigState {
  wanted: string;
  /** The settings of the wanted config (fleet file, overrides, rollout pin). */
  settings: DeviceSettings;
  group: string | null;
  /** The settings an operator override sets for it (its own or its group's). */
  overridden: OverrideKey[];
  applied: string | null;
  /** The reason of the device's last refusal, if its last answer was one. */
  refused: string | null;
  /** The config id it refused last (null: its last answer was no refusal). */
  refusedId: string | null;
}

export interface FleetConfigsOptions {
  broker: EdgeBroker;
  bus: EdgeBus;
  registry: ModelRegistry;
  base: string;
  /** The fleet the edge serves; '+': any (a fleet file then says which). */
  fleet: string;
  edgeId: string;
  /** How long the cluster's leader lock lasts without renewal (leader.ts; default 10 s). */
  leaderTtlMs?: number;
  /** The fleet the edge's own topics (its job list) are published under. */
  statusFleet: string;
  /** Folder of the rollout jobs' state (`jobs.json`); null: kept in memory. */
  stateDir: string | null;
  /** Where the rollout metrics are registered. */
  metrics: Registry;
  /** A fleet file to put in force at start. */
  fleetFile?: FleetFile;
  /** The operator's overrides at start (fleet-config/overrides.ts). */
  overrides?: Overrides;
  /** Where `set-config` keeps the overrides (written atomically); null: in memory. */
  overridesFile?: string | null;
}

/** What a `set-config` did: the devices whose config was published again, and where
 * the overrides are kept. */
export interface SetConfigResult {
  devices: string[];
  persisted: string | null;
}

/** A device's answer is its own text: the longest config id it may name, and the most of
 * its refusal kept (and shown in /devices, the devices report and the log). */
const MAX_CONFIG_ID = 256;
const MAX_REFUSAL = 1024;

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The data of a config answer: what the device runs and what it refused; undefined
 * when it is not one (config ids over MAX_CONFIG_ID characters included). */
export function parseConfigAck(data: unknown): ConfigAck | undefined {
  if (data === null || data === undefined) return { configId: null, refused: null };
  if (!isObj(data)) return undefined;
  const d = data;
  const text = (v: unknown) =>
    v === undefined || v === null || (typeof v === 'string' && v.length <= MAX_CONFIG_ID);
  if (!text(d.configId) || !text(d.refused)) return undefined;
  return {
    configId: typeof d.configId === 'string' ? d.configId : null,
    refused: typeof d.refused === 'string' ? d.refused : null,
  };
}

export class FleetConfigs implements Part {
  readonly name = 'fleet configs';
  /** The rollout jobs (their pins are part of each device's config). */
  readonly rollouts: RolloutManager;
  /** The fleet file in force with the overrides laid on: what devices run. */
  private fleetOf: FleetFile | null = null;
  /** The fleet file in force as written. */
  private fileOf: FleetFile | null = null;
  private overrides: Overrides;
  /** Fleet files and operator changes come into force one at a time, in order. */
  private changes: Promise<unknown> = Promise.resolve();
  private readonly states = new Map<string, DeviceConfigState>();
  private readonly offBus: (() => void)[] = [];
  private unsubscribe: (() => Promise<void>) | null = null;

  constructor(private readonly o: FleetConfigsOptions) {
    this.overrides = o.overrides ?? emptyOverrides();
    const jobsTopic = edgeTopic(o.statusFleet, o.edgeId, 'jobs', o.base);
    this.rollouts = new RolloutManager(
      {
        fleet: () => this.fleetOf,
        registry: o.registry,
        republish: (devices) =>
          this.fleetOf ? this.publish(this.fleetOf, devices) : Promise.resolve(),
        configState: (d) => this.states.get(d),
        changed: (jobs) =>
          background(
            publishJson(o.broker, jobsTopic, { edgeId: o.edgeId, ts: Date.now(), jobs }, true),
            'jobs report',
          ),
      },
      { stateFile: o.stateDir ? join(o.stateDir, 'jobs.json') : null, metrics: o.metrics },
    );
  }

  /** The fleet file in force with the operator's overrides, or null. */
  get fleetFile(): FleetFile | null {
    return this.fleetOf;
  }

  /** The settings a rollout pins on a device, or undefined. */
  pinOf(device: string): Partial<DeviceSettings> | undefined {
    return this.rollouts.overrideFor(device);
  }

  /** A copy of every device's config state. */
  snapshot(): Map<string, DeviceConfigState> {
    return new Map([...this.states].map(([k, v]) => [k, { ...v }]));
  }

  async start(): Promise<void> {
    const { o } = this;
    this.feedRollouts();
    const acks = deviceOpTopic(o.fleet, '+', 'response', 'config', o.base);
    this.unsubscribe = await subscribe(o.broker, acks, (p, payload) =>
      this.onAck(p.topic, payload),
    );
    // saved jobs first: their pins belong in the first configs published; in a cluster
    // one node runs the rollouts, the holder of the leader lock (leader.ts)
    const lead = await rolloutLeadership(o.broker.aedes, {
      base: o.base,
      fleet: o.statusFleet,
      name: o.edgeId,
      ttlMs: o.leaderTtlMs,
    });
    await this.rollouts.start(lead);
    if (o.fleetFile) await this.apply(o.fleetFile);
  }

  async stop(): Promise<void> {
    for (let off = this.offBus.pop(); off; off = this.offBus.pop()) off();
    await this.rollouts.close();
    await this.unsubscribe?.();
  }

  /** Check a fleet file with overrides against the names and this edge's bundles;
   * throws FleetConfigError with every problem. */
  private check(f: FleetFile, overrides: Overrides): FleetFile {
    const ctx = { codecs: codecNames(), plans: this.o.registry.planSources() };
    const checked = checkFleet(f, `fleet file ${f.fleet}`, ctx);
    if (Object.keys(overrides.groups).length + Object.keys(overrides.devices).length === 0)
      return checked;
    const { fleet, unknown } = applyOverrides(f, overrides);
    if (unknown.length > 0)
      log.warn(
        { fleet: f.fleet, unknown },
        'operator overrides of devices or groups the fleet file lacks are left out',
      );
    return checkFleet(fleet, `fleet file ${f.fleet} with the operator overrides`, ctx);
  }

  /** Put a fleet file in force (with the operator's overrides on it): publish every
   * device's effective config (retained); the devices no longer in the fleet get their
   * retained config cleared. Throws FleetConfigError, and changes nothing, when a
   * device's model, codec or point does not fit a bundle this edge serves. */
  apply(f: FleetFile): Promise<void> {
    return this.inTurn(() => this.applyNow(f));
  }

  private inTurn<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.changes.then(fn);
    this.changes = run.catch(() => undefined);
    return run;
  }

  private async applyNow(f: FleetFile): Promise<void> {
    const { o } = this;
    if (o.fleet !== '+' && f.fleet !== o.fleet) {
      throw new Error(`fleet file is for fleet ${f.fleet}, this edge serves ${o.fleet}`);
    }
    const merged = this.check(f, this.overrides);
    const before = this.fleetOf;
    this.fileOf = f;
    this.fleetOf = merged;
    if (before && before.fleet !== f.fleet) this.states.clear();
    await this.publish(merged, Object.keys(merged.devices));
    for (const device of Object.keys(before?.devices ?? {})) {
      if (before && !(device in merged.devices)) {
        this.states.delete(device);
        await o.broker.publish(
          deviceTopic(before.fleet, device, 'config', o.base),
          Buffer.alloc(0),
          true,
        );
      }
    }
    log.info({ fleet: f.fleet, devices: Object.keys(f.devices).length }, 'fleet config published');
    this.rollouts.resume(); // queued jobs wait for a fleet file
    o.bus.emit('fleetApplied', { fleet: merged });
  }

  /** An operator's change of a device's or a group's settings: checked as the fleet file
   * is, kept (the overrides file), laid on the file in force and published to the
   * devices it concerns. Throws (changing nothing) when it does not check. A device or
   * group the file lacks may only have its leftover override removed. */
  setConfig(change: OverrideChange): Promise<SetConfigResult> {
    return this.inTurn(() => this.change(change));
  }

  private async change(change: OverrideChange): Promise<SetConfigResult> {
    const file = this.fileOf;
    if (!file) throw new OpError('this edge runs no fleet file: start it with --fleet-file');
    // in a cluster the configs are the leader's to publish (a follower's would be lost)
    if (!this.rollouts.leader)
      throw new OpError(
        `edge ${this.o.edgeId} is not the leader of its cluster: send the change to the node that runs the rollouts`,
      );
    const t = change.target;
    // an override of an id the file no longer has may still be removed (null), so that
    // such leftovers never fill the overrides file for good
    const kept =
      'device' in t
        ? Object.hasOwn(this.overrides.devices, t.device)
        : Object.hasOwn(this.overrides.groups, t.group);
    const removal = kept && Object.values(change.set).every((v) => v === null);
    if ('device' in t && !Object.hasOwn(file.devices, t.device) && !removal)
      throw new OpError(
        `fleet ${file.fleet} has no device ${JSON.stringify(t.device)}; devices: ${listed(Object.keys(file.devices))}`,
      );
    if ('group' in t && !Object.hasOwn(file.groups, t.group) && !removal)
      throw new OpError(
        `fleet ${file.fleet} has no group ${JSON.stringify(t.group)}; groups: ${listed(Object.keys(file.groups))}`,
      );
    let next: Overrides;
    try {
      next = withChange(this.overrides, change);
    } catch (e) {
      throw new OpError(e instanceof Error ? e.message : String(e));
    }
    let merged: FleetFile;
    try {
      merged = this.check(file, next);
    } catch (e) {
      if (e instanceof FleetConfigError)
        throw new OpError(e.problems.map(formatProblem).join('\n'));
      throw e;
    }
    if (this.o.overridesFile) {
      try {
        await saveOverrides(this.o.overridesFile, next);
      } catch (e) {
        // the operator learns that and why (its code), the log has the rest
        log.warn({ file: this.o.overridesFile, err: String(e) }, 'overrides not kept');
        const code = (e as NodeJS.ErrnoException).code ?? 'write failed';
        throw new OpError(`the change could not be kept (${code}): nothing changed`);
      }
    }
    this.overrides = next;
    this.fleetOf = merged;
    const devices = Object.keys(merged.devices).filter((d) =>
      'device' in t ? d === t.device : merged.devices[d]?.group === t.group,
    );
    await this.publish(merged, devices);
    log.info(
      { fleet: file.fleet, ...t, set: change.set, devices },
      'operator config change published',
    );
    return { devices, persisted: this.o.overridesFile ?? null };
  }

  /** Publish the effective configs of `devices` (with any rollout pin), each naming the
   * registry's bundle for it so the device can fetch it over the air. */
  private async publish(f: FleetFile, devices: readonly string[]): Promise<void> {
    const { o } = this;
    for (const device of devices) {
      if (!(device in f.devices)) continue;
      const c = effectiveConfig(f, device, this.rollouts.overrideFor(device));
      const { fleet, device: d, group, configId: settingsId, ...settings } = c;
      const bundle = o.registry.resolve(settings.model, settings.codec) ?? undefined;
      // the id names the bundle too: a new bundle for the same settings is a new config
      const configId = bundle ? configIdWithBundle(settingsId, bundle) : settingsId;
      const msg: ConfigMessage = {
        v: CONFIG_VERSION,
        configId,
        fleet,
        device: d,
        group,
        settings,
        ...(bundle ? { bundle } : {}),
        ts: Date.now(),
      };
      const prev = this.states.get(device);
      const same = prev?.wanted === configId;
      this.states.set(device, {
        wanted: configId,
        settings,
        group,
        overridden: this.fileOf ? overriddenFor(this.fileOf, this.overrides, device) : [],
        applied: prev?.applied ?? null,
        // a refusal of an earlier config says nothing about this one
        refused: same ? (prev?.refused ?? null) : null,
        refusedId: same ? (prev?.refusedId ?? null) : null,
      });
      // in a cluster one node publishes the configs, the holder of the leader lock: a
      // follower's copy of the rollout pins may be up to a lock renewal old, and its
      // publish would undo the leader's (a node that takes the lock republishes them all)
      if (this.rollouts.leader)
        await publishJson(o.broker, deviceTopic(f.fleet, device, 'config', o.base), msg, true);
    }
  }

  /** A device's answer to a config. Configs are tracked for the fleet file's fleet only
   * (a device of another fleet may carry the same id). */
  private onAck(topic: string, payload: Buffer): void {
    const t = parseOpTopic(topic, this.o.base);
    if (!t || t.kind !== 'device' || t.dir !== 'response' || t.op !== 'config') return;
    const st = t.fleet === this.fleetOf?.fleet ? this.states.get(t.id) : undefined;
    if (!st) return;
    const r = parseOpResponse(payload);
    const ack = r && parseConfigAck(r.data);
    if (!r || !ack) {
      limitedLog.warn(`config-ack:${t.fleet}/${t.id}`, { topic }, 'unreadable config answer');
      return;
    }
    const error = r.status === 'error' ? (r.error?.slice(0, MAX_REFUSAL) ?? null) : null;
    if (error !== null)
      limitedLog.warn(
        `config-refused:${t.fleet}/${t.id}`,
        { fleet: t.fleet, device: t.id, configId: ack.refused, runs: ack.configId, why: error },
        'device refused its config',
      );
    st.applied = ack.configId;
    st.refused = error;
    st.refusedId = r.status === 'error' ? ack.refused : null;
    this.o.bus.emit('configAcked', { fleet: t.fleet, deviceId: t.id, ack, error });
  }

  /** Rollouts read their health from the results and errors of the fleet file's fleet,
   * this node's and (in a cluster) the other nodes'. */
  private feedRollouts(): void {
    const { bus } = this.o;
    const ours = (fleet: string) => fleet === this.fleetOf?.fleet;
    this.offBus.push(
      bus.on('result', ({ fleet, deviceId, result: r }) => {
        if (!ours(fleet)) return;
        const model = bundleRefString({ name: r.model, version: r.modelVersion });
        this.rollouts.result(deviceId, model, r.score, r.latency.edgeMs);
      }),
      bus.on('frameError', ({ fleet, deviceId }) => {
        if (ours(fleet)) this.rollouts.error(deviceId);
      }),
      bus.on('clusterAnswer', ({ fleet, deviceId, result: r }) => {
        if (!ours(fleet)) return;
        if (!r) return this.rollouts.error(deviceId);
        const model = bundleRefString({ name: r.model, version: r.modelVersion });
        this.rollouts.result(deviceId, model, r.score, r.latency.edgeMs);
      }),
    );
  }
}
