/**
 * Model rollouts as jobs (AWS IoT Jobs' vocabulary), run by the edge:
 *
 *   QUEUED -> IN_PROGRESS -> SUCCEEDED | FAILED | ROLLED_BACK
 *
 * A job pins a bundle of the edge's registry (`name@version`) on its target devices
 * (devices, groups, or a percentage of them), wave by wave (canary first). For each wave
 * the edge republishes the wave's configs with the pin, waits until every device has
 * applied it (a device fetches the bundle over the air and verifies it; a refusal or no
 * answer in time fails the wave), then measures the wave's health on the edge from its
 * own results and errors on the new model: error rate, p95 edge latency and mean
 * confidence (top-1 score; absolute floor, or the drop from the same devices' confidence
 * before the job, a proxy for accuracy where frames carry no labels). A failed gate rolls
 * every device of the job back (its pin is removed and the previous config republished)
 * unless the job says otherwise. A job that succeeds keeps its pin until a later job or
 * `rollback` replaces it. Jobs run one at a time, in order; their state is kept in a
 * JSON file so an edge restart neither forgets a pin nor leaves a half-done rollout (an
 * IN_PROGRESS job found at start is rolled back). In a cluster the holder of the leader
 * lock runs them and keeps them in Redis too (leader.ts); the others refuse jobs, publish
 * the leader's pins as last read, and resume its jobs when the lock comes to them.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Gauge, type Registry } from 'prom-client';
import type { DeviceSettings, FleetFile } from '../../fleet-config/schema.js';
import { log } from '../../core/util/log.js';
import { percentile, pushBounded, round } from '../../core/util/stats.js';
import { parseJobs, readJobs, writeJobs, type Leadership, type LockState } from './leader.js';
import type { ModelRegistry } from './registry.js';
import {
  gateProblems,
  parseRolloutSpec,
  ROLLOUT_DEFAULTS,
  RolloutError,
  settingsOf,
  waveSizes,
  type HealthGates,
  type RolloutSpec,
  type WaveHealth,
} from './rollout-spec.js';

export { parseRolloutSpec, ROLLOUT_DEFAULTS, RolloutError, waveSizes } from './rollout-spec.js';
export type { HealthGates, RolloutSpec, WaveHealth } from './rollout-spec.js';

export const JOB_STATES = ['QUEUED', 'IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'ROLLED_BACK'] as const;
export type JobState = (typeof JOB_STATES)[number];

export interface RolloutJob {
  jobId: string;
  state: JobState;
  spec: RolloutSpec;
  gates: HealthGates;
  /** Every target device, in wave order. */
  targets: string[];
  /** Cumulative wave sizes. */
  waves: number[];
  /** Index of the wave running or last run (-1: none yet). */
  wave: number;
  /** Devices that were given the pin. */
  deployed: string[];
  /** Mean confidence of the targets before the job (null: no results yet). */
  baselineConfidence: number | null;
  health: WaveHealth[];
  reason: string | null;
  created: number;
  updated: number;
}

/** A saved job, as far as loading it needs. */
function isJob(v: unknown): v is RolloutJob {
  const j = v as Partial<RolloutJob> | null;
  return (
    typeof j === 'object' &&
    j !== null &&
    typeof j.jobId === 'string' &&
    JOB_STATES.includes(j.state!) &&
    Array.isArray(j.deployed) &&
    typeof j.spec?.model === 'string'
  );
}

/** What the rollout manager needs from the edge. */
export interface RolloutHost {
  fleet(): FleetFile | null;
  registry: ModelRegistry;
  /** Recompute and publish these devices' configs (with the pins now in force). */
  republish(devices: readonly string[]): Promise<void>;
  /** The config id the edge wants a device to run, what it runs, and its last refusal. */
  configState(
    device: string,
  ):
    | { wanted: string; applied: string | null; refused: string | null; refusedId: string | null }
    | undefined;
  /** Called on every job change (the edge publishes the list retained). */
  changed(jobs: RolloutJob[]): void;
}

const EVENTS_PER_DEVICE = 400;
const TICK_MS = 200;

interface Outcome {
  at: number;
  model: string | null;
  score: number | null;
  edgeMs: number | null;
}

export class RolloutManager {
  private jobs: RolloutJob[] = [];
  private readonly outcomes = new Map<string, Outcome[]>();
  private running: Promise<void> | null = null;
  private cancel = new Set<string>();
  private closed = false;
  private saving: Promise<void> = Promise.resolve();
  private readonly deployedSets = new WeakMap<RolloutJob, Set<string>>();
  private lead: Leadership | null = null; // null: always the leader; then its jobs last read
  private mirrored: string | null = null;

  constructor(
    private readonly host: RolloutHost,
    private readonly opts: { stateFile?: string | null; metrics?: Registry },
  ) {
    if (opts.metrics) {
      const jobs = () => this.jobs;
      new Gauge({
        name: 'splitfleet_rollout_jobs',
        help: 'Rollout jobs by state',
        labelNames: ['state'],
        registers: [opts.metrics],
        collect() {
          for (const s of JOB_STATES)
            this.set({ state: s }, jobs().filter((j) => j.state === s).length);
        },
      });
    }
  }

  /** Whether this node runs the rollouts (the leader lock is its own, or there is none). */
  get leader(): boolean {
    return this.lead?.leader ?? true;
  }

  /** Run under a leader lock (null: none, always the leader), then load the saved jobs:
   * the leader's from Redis, else this node's file. */
  async start(lead: Leadership | null): Promise<void> {
    this.lead = lead;
    await (this.leader ? this.load() : this.follow('follower'));
    lead?.onTry((s) => (s === 'held' ? Promise.resolve() : this.follow(s)));
  }

  /** A try of the lock: a node that just took it resumes the leader's jobs (pins
   * republished, queued jobs started); one that does not hold it reads them. */
  private async follow(s: LockState): Promise<void> {
    if (this.closed) return;
    if (s === 'follower') {
      const text = (await this.lead?.loadJobs()) ?? null;
      const jobs = text === this.mirrored ? null : parseJobs(text, isJob);
      this.mirrored = text;
      if (jobs) this.host.changed((this.jobs = jobs));
      return;
    }
    await this.load();
    const f = this.host.fleet();
    if (f && !this.closed) await this.host.republish(Object.keys(f.devices));
    this.kick();
  }

  /** Read the saved jobs (the leader's in Redis, else this node's file); an IN_PROGRESS
   * job from before a restart is rolled back. */
  async load(): Promise<void> {
    const jobs = await readJobs(this.lead, this.opts.stateFile ?? null, isJob);
    if (!jobs || this.closed) return;
    this.jobs = jobs;
    for (const j of this.jobs) {
      if (j.state === 'IN_PROGRESS')
        this.finish(j, 'ROLLED_BACK', 'the edge restarted during the rollout');
    }
  }

  /** Start queued jobs (the edge calls it once a fleet file is in force). */
  resume(): void {
    this.kick();
  }

  list(): RolloutJob[] {
    return this.jobs.map((j) => structuredClone(j));
  }

  /** The settings a job pins on a device (the newest job in force wins), or undefined. */
  overrideFor(device: string): Partial<DeviceSettings> | undefined {
    for (let i = this.jobs.length - 1; i >= 0; i--) {
      const j = this.jobs[i]!;
      const live =
        j.state === 'SUCCEEDED' ||
        j.state === 'IN_PROGRESS' ||
        (j.state === 'FAILED' && j.deployed.length > 0);
      if (live && this.deployedSet(j).has(device)) return this.pin(j);
    }
    return undefined;
  }

  /** A job's deployed devices as a set (one lookup per device, not a scan per device:
   * the edge asks for every device of the fleet at each publish). */
  private deployedSet(j: RolloutJob): Set<string> {
    let s = this.deployedSets.get(j);
    if (!s || s.size !== j.deployed.length) {
      s = new Set(j.deployed);
      this.deployedSets.set(j, s);
    }
    return s;
  }

  /** The edge saw a result (or an error) of a device. */
  result(device: string, model: string, score: number, edgeMs: number): void {
    this.record(device, { at: Date.now(), model, score, edgeMs });
  }
  error(device: string): void {
    this.record(device, { at: Date.now(), model: null, score: null, edgeMs: null });
  }

  /** Check and queue a job; throws RolloutError with what is wrong. */
  create(asked: RolloutSpec): RolloutJob {
    this.mustLead();
    const spec = parseRolloutSpec(asked);
    const f = this.host.fleet();
    if (!f) throw new RolloutError('this edge has no fleet file: start it with --fleet-file');
    const entry = this.host.registry.get(spec.model);
    if (!entry) {
      throw new RolloutError(
        `model ${spec.model} is not in the edge's registry (has ${this.host.registry
          .list()
          .map((e) => e.ref)
          .join(', ')})`,
      );
    }
    for (const d of spec.devices ?? [])
      if (!(d in f.devices)) throw new RolloutError(`device ${d} is not in fleet ${f.fleet}`);
    for (const g of spec.groups ?? [])
      if (!(g in f.groups)) throw new RolloutError(`group ${g} is not in fleet ${f.fleet}`);
    const { gates } = settingsOf(spec);
    const jobId = `job-${new Date().toISOString().slice(0, 10)}-${randomUUID().slice(0, 8)}`;
    const named = new Set(spec.devices ?? []);
    for (const [d, s] of Object.entries(f.devices))
      if (s.group && spec.groups?.includes(s.group)) named.add(d);
    // naming devices or groups (even ones with no devices) targets those; naming none, all
    let targets = spec.devices?.length || spec.groups?.length ? [...named] : Object.keys(f.devices);
    // a stable, job-specific order: waves and percentages pick by it
    const rank = new Map(
      targets.map((d) => [d, createHash('sha256').update(`${jobId}/${d}`).digest('hex')]),
    );
    targets.sort((a, b) => (rank.get(a)! < rank.get(b)! ? -1 : 1));
    if (spec.percent !== undefined)
      targets = targets.slice(0, Math.ceil((spec.percent / 100) * targets.length));
    if (targets.length === 0) throw new RolloutError('the target names no device');
    const job: RolloutJob = {
      jobId,
      state: 'QUEUED',
      spec,
      gates,
      targets,
      waves: waveSizes(spec.waves ?? ROLLOUT_DEFAULTS.waves, targets.length),
      wave: -1,
      deployed: [],
      baselineConfidence: null,
      health: [],
      reason: null,
      created: Date.now(),
      updated: Date.now(),
    };
    this.jobs.push(job);
    this.touch(job);
    const queued = structuredClone(job);
    this.kick();
    return queued;
  }

  /** Roll a job back by hand (running or done): its pins go, previous configs return. */
  async rollback(jobId: string): Promise<RolloutJob> {
    this.mustLead();
    const j = this.jobs.find((x) => x.jobId === jobId);
    if (!j) throw new RolloutError(`no job ${jobId}`);
    if (j.state === 'ROLLED_BACK') return structuredClone(j);
    if (j.state === 'QUEUED') {
      this.finish(j, 'ROLLED_BACK', 'rolled back by an operator before it started');
      return structuredClone(j);
    }
    if (j.state === 'IN_PROGRESS') {
      this.cancel.add(jobId);
      await this.running;
      return structuredClone(j);
    }
    await this.revert(j, 'rolled back by an operator');
    return structuredClone(j);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.running;
    await this.saving;
    await this.lead?.stop();
  }

  private mustLead(): void {
    if (!this.leader) throw new RolloutError('another edge runs the rollouts: ask the leader');
  }

  private pin(j: RolloutJob): Partial<DeviceSettings> | undefined {
    const entry = this.host.registry.get(j.spec.model);
    if (!entry) {
      // the edge restarted without the job's bundle: its devices fall back to the file
      log.warn({ job: j.jobId, model: j.spec.model }, 'pinned model not in the registry');
      return undefined;
    }
    const m = entry.bundle.manifest;
    return m.kind === 'codec'
      ? { model: j.spec.model, codec: m.codec.method }
      : { model: j.spec.model };
  }

  private record(device: string, o: Outcome): void {
    let list = this.outcomes.get(device);
    if (!list) this.outcomes.set(device, (list = []));
    pushBounded(list, o, EVENTS_PER_DEVICE);
  }

  /** Start the next queued job unless one runs. */
  private kick(): void {
    if (this.running || this.closed || !this.leader) return;
    const next = this.jobs.find((j) => j.state === 'QUEUED');
    if (!next) return;
    this.running = this.run(next)
      .catch((e: unknown) => {
        log.error({ job: next.jobId, err: String(e) }, 'rollout crashed');
        this.finish(next, 'FAILED', `internal error: ${String(e)}`);
      })
      .finally(() => {
        this.running = null;
        this.kick();
      });
  }

  private async run(j: RolloutJob): Promise<void> {
    j.state = 'IN_PROGRESS';
    j.baselineConfidence = this.confidence(j.targets, 0, null);
    this.touch(j);
    log.info(
      { job: j.jobId, model: j.spec.model, targets: j.targets.length, waves: j.waves },
      'rollout started',
    );
    for (let w = 0; w < j.waves.length; w++) {
      j.wave = w;
      const wave = j.targets.slice(w === 0 ? 0 : j.waves[w - 1], j.waves[w]);
      j.deployed.push(...wave);
      this.touch(j);
      await this.host.republish(wave);
      const failure = (await this.applied(j, wave)) ?? (await this.healthy(j, wave));
      if (this.closed || !this.leader) return; // stays IN_PROGRESS: rolled back later
      if (failure) {
        if (this.cancel.has(j.jobId)) {
          await this.revert(j, `rolled back by an operator during wave ${w + 1}`);
        } else if (!settingsOf(j.spec).autoRollback) {
          this.finish(j, 'FAILED', `wave ${w + 1}: ${failure}; left as it is (autoRollback off)`);
        } else {
          await this.revert(j, `wave ${w + 1}: ${failure}`);
        }
        return;
      }
      log.info({ job: j.jobId, wave: w + 1, devices: wave }, 'rollout wave passed');
    }
    this.finish(j, 'SUCCEEDED', null);
  }

  /** Wait until every device of the wave runs the pinned config; the failure, or null. */
  private async applied(j: RolloutJob, wave: string[]): Promise<string | null> {
    const { applyTimeoutMs } = settingsOf(j.spec);
    const deadline = Date.now() + applyTimeoutMs;
    for (;;) {
      if (this.cancel.has(j.jobId) || this.closed || !this.leader) return 'cancelled';
      let all = true;
      for (const d of wave) {
        const st = this.host.configState(d);
        if (!st) return `device ${d} left the fleet`;
        if (st.applied === st.wanted) continue;
        if (st.refusedId === st.wanted) return `device ${d} refused the new config: ${st.refused}`;
        all = false;
      }
      if (all) return null;
      if (Date.now() > deadline) {
        const late = wave.filter((d) => {
          const s = this.host.configState(d);
          return s?.applied !== s?.wanted;
        });
        return `${late.join(', ')} did not apply the new config within ${applyTimeoutMs} ms`;
      }
      await sleep(TICK_MS);
    }
  }

  /** Soak the wave and read its gates; the failure, or null. */
  private async healthy(j: RolloutJob, wave: string[]): Promise<string | null> {
    const since = Date.now();
    const { minFrames: need, soakMs } = settingsOf(j.spec);
    const deadline = since + soakMs;
    for (;;) {
      if (this.cancel.has(j.jobId) || this.closed || !this.leader) return 'cancelled';
      const counts = wave.map((d) => this.window(d, since, j.spec.model).length);
      if (counts.every((n) => n >= need)) break;
      if (Date.now() > deadline) {
        const quiet = wave.filter((_, i) => counts[i] === 0);
        if (quiet.length)
          return `no frames from ${quiet.join(', ')} on the new model within ${soakMs} ms`;
        break; // some frames from every device: read the gates on what there is
      }
      await sleep(TICK_MS);
    }
    j.health = wave.map((d) => this.health(d, since, j.spec.model));
    this.touch(j);
    const conf = this.confidence(wave, since, j.spec.model);
    const problems = gateProblems(j.gates, j.health, conf, j.baselineConfidence);
    return problems.length ? problems.join('; ') : null;
  }

  /** A wave device's health on `model` since `since`. */
  private health(device: string, since: number, model: string): WaveHealth {
    const ev = this.window(device, since, model);
    const errors = ev.filter((e) => e.model === null).length;
    const ok = ev.filter((e) => e.model !== null);
    const lat = ok.map((e) => e.edgeMs!);
    return {
      device,
      frames: ev.length,
      errors,
      errorRate: ev.length ? round(errors / ev.length, 4) : 0,
      latencyMsP95: lat.length ? round(percentile(lat, 95), 2) : null,
      confidence: ok.length ? round(ok.reduce((a, e) => a + e.score!, 0) / ok.length, 4) : null,
    };
  }

  /** A device's outcomes since `since` that belong to `model` (errors count for it). */
  private window(device: string, since: number, model: string): Outcome[] {
    return (this.outcomes.get(device) ?? []).filter(
      (o) => o.at >= since && (o.model === null || o.model === model),
    );
  }

  private confidence(devices: string[], since: number, model: string | null): number | null {
    const scores = devices.flatMap((d) =>
      (this.outcomes.get(d) ?? [])
        .filter((o) => o.at >= since && o.score !== null && (model === null || o.model === model))
        .map((o) => o.score!),
    );
    return scores.length ? round(scores.reduce((a, b) => a + b, 0) / scores.length, 4) : null;
  }

  /** Remove the job's pins, republish, wait (bounded) for the devices to go back. */
  private async revert(j: RolloutJob, reason: string): Promise<void> {
    const devices = j.deployed;
    j.state = 'ROLLED_BACK';
    j.reason = reason;
    this.touch(j);
    log.warn({ job: j.jobId, reason, devices }, 'rolling back');
    await this.host.republish(devices);
    const deadline = Date.now() + settingsOf(j.spec).applyTimeoutMs;
    while (!this.closed && Date.now() < deadline) {
      if (
        devices.every((d) => {
          const s = this.host.configState(d);
          return !s || s.applied === s.wanted;
        })
      )
        break;
      await sleep(TICK_MS);
    }
    this.cancel.delete(j.jobId);
    this.touch(j);
  }

  private finish(j: RolloutJob, state: JobState, reason: string | null): void {
    j.state = state;
    j.reason = reason;
    this.touch(j);
    log.info({ job: j.jobId, state, reason }, 'rollout finished');
  }

  private touch(j: RolloutJob): void {
    j.updated = Date.now();
    this.host.changed(this.list());
    const body = JSON.stringify({ jobs: this.jobs }, null, 1);
    const [lead, file] = [this.lead, this.opts.stateFile ?? null];
    this.saving = this.saving
      .then(() => writeJobs(lead, file, body))
      .catch((e: unknown) => log.error({ file, err: String(e) }, 'rollout state not saved'));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
