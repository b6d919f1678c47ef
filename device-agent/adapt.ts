/**
 * Adaptive rate: with a latency goal and a learned codec, the rate controller (rate.ts)
 * watches every frame sent and answered and picks the most accurate operating point that
 * meets the goal on this link; the head is switched to it between two encodes and the
 * new point recorded in the settings (config.ts). Without a goal the point stays fixed.
 */
import { expectedStreamBytes } from '../core/codec/rans.js';
import { encodeFrame } from '../core/wire/frame.js';
import { background, log } from '../core/util/log.js';
import type { Bus } from './bus.js';
import type { RuntimeConfig } from './config.js';
import type { Head } from './head.js';
import { RateController, type RatePoint } from './rate.js';

/** A frame id of the size the agent's ids have (5 header bytes), for frame-size estimates. */
const TYPICAL_FRAME_ID = 0x1000_0000;

export interface AdaptDeps {
  deviceId: string;
  bus: Bus;
  config: RuntimeConfig;
  head: Head;
  /** The connection frames go on (null: offline) and the frames in flight on it. */
  connection: () => number | null;
  inFlight: () => number;
  /** Publish the device's status again (it names the point); must not reject. */
  announce: () => Promise<void>;
}

export class AdaptivePoint {
  private rate: RateController | null = null;
  private switching = false;

  constructor(private readonly d: AdaptDeps) {
    d.bus.on('published', (p) => this.rate?.sent(p.bytes, p.at));
    d.bus.on('answered', (a) => this.rate?.answered(a.bytes, a.sentAt, a.at, a.latencyMs));
    d.bus.on('configured', () => this.configure());
  }

  /** (Re)build the controller for the bundle, codec and goal in force: it needs the
   * expected size and accuracy of every point, which a learned codec's manifest has. */
  configure(): void {
    const s = this.d.config.settings;
    const m = s.bundle.manifest;
    if (s.latencyGoalMs === null) {
      this.rate = null;
      return;
    }
    if (m.kind !== 'codec') {
      log.warn(
        { device: this.d.deviceId, codec: s.codec },
        "a latency goal needs a learned codec (its manifest has each point's size and accuracy): the fixed point is kept",
      );
      this.rate = null;
      return;
    }
    // a point's frame: its expected payload in this agent's frame (ids, shape, time)
    const frameBytes = (p: (typeof m.codec.points)[number]) =>
      encodeFrame({
        frameId: TYPICAL_FRAME_ID,
        modelId: m.modelId,
        modelVersion: m.version,
        codecId: m.codec.id,
        codecVersion: m.codec.version,
        point: p.index,
        shape: p.symbolShape,
        captureTs: Date.now(),
        // the entropy coder's bits, plus what rANS flushes (core/codec/rans.ts)
        payload: new Uint8Array(
          m.codec.coding === 'rans'
            ? expectedStreamBytes(p.bitsPerImage)
            : Math.ceil(p.bitsPerImage / 8),
        ),
      }).byteLength;
    const points: RatePoint[] = m.codec.points.map((p) => ({
      point: p.index,
      label: p.label,
      bytes: frameBytes(p),
      top1: p.top1,
    }));
    this.rate = new RateController(
      { latencyGoalMs: s.latencyGoalMs, fps: s.fps, maxKbps: s.maxKbps, points },
      s.point,
    );
  }

  /** Ask the controller; switch the head to the point it picks (between encodes). */
  tick(): void {
    if (!this.rate || this.switching || this.d.connection() === null) return;
    const decision = this.rate.decide(performance.now(), this.d.inFlight());
    if (!decision) return;
    this.switching = true;
    const { config, head } = this.d;
    const gen = config.generation;
    const { bundle, codec, engine } = config.settings;
    const change = async () => {
      const next = await head.build({ bundle, codec, point: decision.to, engine });
      // a config applied while the head loaded wins
      if (gen !== config.generation) return next.close();
      await head.swap(next);
      if (!config.setPoint(gen, decision.to)) return; // the config's own head follows at once
      const d = { ...decision, at: Date.now() };
      this.d.bus.emit('point', d);
      log.info({ device: this.d.deviceId, ...decision }, 'operating point changed');
      await this.d.announce();
    };
    const run = async () => {
      try {
        await change();
      } catch (e) {
        log.warn({ device: this.d.deviceId, err: String(e) }, 'point change failed');
      } finally {
        this.switching = false;
      }
    };
    background(run(), 'point change');
  }
}
