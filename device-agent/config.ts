/**
 * The settings the agent runs, their one owner: start-up options first, then each config
 * the edge publishes on `.../config` applied live, one at a time in the order they came,
 * or refused with the reason (the old settings stay). Every config is answered on
 * `.../response/config` with a ConfigAck: the config now running, and the one refused.
 *
 * The latest config wins: one that is still waiting for its bundle (a download over the
 * air, a bundle loading) when a newer config comes is superseded: it is never applied nor
 * answered, its download is abandoned unless the newer config needs the same bundle, and
 * the newer one is applied at once. Once a config's bundle is there it is applied, and a
 * newer one follows it.
 */
import { parseEngineName } from '../core/engine/select.js';
import type { Bundle } from '../core/model/bundle.js';
import {
  parseConfig,
  type ConfigAck,
  type ConfigMessage,
  type OpResponse,
} from '../core/wire/messages.js';
import { bundleRefString } from '../core/wire/ota.js';
import { log } from '../core/util/log.js';
import type { Bus } from './bus.js';
import type { WireLink } from './context.js';
import type { Head } from './head.js';
import type { AgentSettings } from './settings.js';
import type { BundleUpdater } from './updater.js';

export interface ConfigDeps {
  deviceId: string;
  /** The agent's source spec: set at start, a config cannot change it. */
  source: string;
  head: Head;
  bus: Bus;
  /** Loads the bundle a config names (model, codec); without it only configs the running
   * bundle can serve are applied. */
  resolveBundle?: (model: string, codec: string) => Promise<Bundle>;
  /** Fetches bundles over the air (null: no bundle store). */
  updater: BundleUpdater | null;
  /** Publish an answer on `.../response/config`; must not reject. */
  answer: (body: string) => Promise<void>;
  /** Publish the device's status again (it names the settings); must not reject. */
  announce: () => Promise<void>;
  /** The wire format the agent runs, chosen at start (its subscriptions and link follow
   * it): a config naming the other one is refused. Default v1. */
  wire?: 'v1' | 'v2';
  /** Wire v2's link, where a config's topk and batching apply (null: wire v1, where they
   * have no effect). */
  link?: WireLink | null;
}

export class RuntimeConfig {
  private current: AgentSettings;
  /** Bumped by every config applied: a point change started under an older one is dropped. */
  private gen = 0;
  private queue: Promise<unknown> = Promise.resolve();
  /** Configs received so far; a config is superseded when another came after it. */
  private received = 0;
  /** The config waiting for its bundle, and how to give that wait up. */
  private waiting: { configId: string; stop: AbortController } | null = null;

  constructor(
    initial: AgentSettings,
    private readonly deps: ConfigDeps,
  ) {
    this.current = Object.freeze({ ...initial });
  }

  /** The settings in force (a frozen snapshot; the next change replaces it). */
  get settings(): Readonly<AgentSettings> {
    return this.current;
  }

  get generation(): number {
    return this.gen;
  }

  /** `name@version` of the bundle it runs. */
  get modelRef(): string {
    return bundleRefString(this.current.bundle.manifest);
  }

  /** A message on the device's `config` topic. */
  onMessage(payload: Buffer): void {
    if (payload.length === 0) return; // retained config cleared: keep running as is
    const c = parseConfig(payload);
    let seq = this.received;
    if (c) {
      seq = ++this.received;
      // a redelivery of the config being prepared does not supersede it
      if (this.waiting && this.waiting.configId !== c.configId)
        this.waiting.stop.abort(new Superseded(`config ${this.waiting.configId} superseded`));
    }
    const next = this.queue.then(() =>
      c ? this.apply(c, seq) : this.respond('not a v1 config message'),
    );
    this.queue = next.catch((e: unknown) =>
      log.warn({ device: this.deps.deviceId, err: String(e) }, 'config not handled'),
    );
  }

  /** The rate controller moved to `point` under config generation `gen`: record it,
   * unless a config came since (false). */
  setPoint(gen: number, point: number): boolean {
    if (gen !== this.gen) return false;
    this.update({ point });
    return true;
  }

  /** Wait for the configs received so far to be applied or refused. */
  async settled(): Promise<void> {
    await this.queue;
  }

  private update(change: Partial<AgentSettings>): void {
    this.current = Object.freeze({ ...this.current, ...change });
    this.deps.bus.emit('settings', this.current);
  }

  private ack(refused: string | null): ConfigAck {
    return { configId: this.current.configId, refused };
  }

  /** Answer on `.../response/config`: the ack, or an error with the ack (naming the
   * config refused) as its data. */
  private respond(error: string | null = null, refused: string | null = null): Promise<void> {
    const body: OpResponse = {
      status: error === null ? 'ok' : 'error',
      data: this.ack(refused),
      error,
      id: null,
      ts: Date.now(),
    };
    return this.deps.answer(JSON.stringify(body));
  }

  /** Apply a config without a restart, or refuse it with the reason and keep the old one. */
  private async apply(c: ConfigMessage, seq: number): Promise<void> {
    const d = this.deps;
    if (seq !== this.received && c.configId !== this.current.configId) {
      log.info({ device: d.deviceId, configId: c.configId }, 'config superseded');
      return;
    }
    if (c.configId === this.current.configId) {
      // a redelivery of what runs: say so again (the edge may have lost the first answer)
      await this.respond();
      return;
    }
    this.gen++; // a point change in flight must not outlive this config
    const s = c.settings;
    try {
      if (c.device !== d.deviceId) throw new Error(`config is for ${c.device}`);
      if (s.source !== d.source) {
        throw new Error(
          `source ${JSON.stringify(s.source)} differs from ${JSON.stringify(d.source)}; the source is set when the agent starts`,
        );
      }
      const wire = d.wire ?? 'v1';
      if (s.wire !== undefined && s.wire !== null && s.wire !== wire) {
        throw new Error(
          `wire ${s.wire}: the agent runs wire ${wire}, chosen when it starts; restart it with --wire ${s.wire}`,
        );
      }
      const now = this.current;
      const engine = s.engine === undefined ? now.engine : parseEngineName(s.engine);
      const stop = new AbortController();
      this.waiting = { configId: c.configId, stop };
      let bundle: Bundle;
      try {
        bundle = await this.bundleFor(c, stop.signal);
      } finally {
        this.waiting = null;
      }
      if (stop.signal.aborted || seq !== this.received) {
        log.info({ device: d.deviceId, configId: c.configId }, 'config superseded');
        return;
      }
      const same =
        bundle === now.bundle &&
        s.codec === now.codec &&
        s.point === now.point &&
        engine === now.engine;
      if (!same) await d.head.replace({ bundle, codec: s.codec, point: s.point, engine });
      d.link?.configure({ topk: s.topk, batch: s.batch });
      this.update({
        bundle,
        codec: s.codec,
        point: s.point,
        fps: s.fps,
        latencyGoalMs: s.latencyGoalMs ?? null,
        maxKbps: s.maxKbps ?? null,
        engine,
        configId: c.configId,
      });
      d.bus.emit('configured', this.current);
      log.info({ device: d.deviceId, configId: c.configId, ...s }, 'config applied');
      await this.respond();
      await d.announce();
    } catch (e) {
      if (e instanceof Superseded || seq !== this.received) {
        log.info({ device: d.deviceId, configId: c.configId }, 'config superseded');
        return;
      }
      const why = e instanceof Error ? e.message : String(e);
      log.warn({ device: d.deviceId, configId: c.configId, why }, 'config refused');
      await this.respond(`config ${c.configId} refused: ${why}`, c.configId);
    }
  }

  /** The bundle a config needs: the one running, a local one, or (when the config names a
   * bundle of the edge's registry the device lacks) one fetched over the air. A bundle
   * that fails verification throws here, so the config is refused and never activated. */
  private async bundleFor(c: ConfigMessage, stop: AbortSignal): Promise<Bundle> {
    const { resolveBundle, updater } = this.deps;
    const s = c.settings;
    const ref = c.bundle;
    const running = this.current.bundle;
    if (!ref) return resolveBundle ? resolveBundle(s.model, s.codec) : running;
    if (running.manifestSha256 === ref.manifestSha256) return running;
    const local = resolveBundle ? await resolveBundle(s.model, s.codec).catch(() => null) : null;
    if (local && local.manifestSha256 === ref.manifestSha256) return local;
    if (!updater) {
      throw new Error(
        `bundle ${bundleRefString(ref)} is not on this device and it has no bundle store to fetch it into (--bundle-dir)`,
      );
    }
    return updater.get(ref, stop);
  }
}

/** Why a config's wait for its bundle was given up: a newer config came. */
class Superseded extends Error {}
