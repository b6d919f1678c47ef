/**
 * The capture loop: take a sample from the source, run it through the head (pipeline.ts)
 * into a frame, and hand the frame to the uplink, at the frame rate in force and while
 * the uplink has room. The frame is taken after the waits, so a live source (a camera)
 * hands over its newest frame, not one that waited for the window or the frame rate.
 */
import { randomInt } from 'node:crypto';
import type { Sample } from '../core/data/cifar.js';
import { log } from '../core/util/log.js';
import { v2FrameBytes } from '../core/wire/frame-v2.js';
import type { Bus } from './bus.js';
import type { Head } from './head.js';
import { frameTag } from './pipeline.js';
import { frameSource, type SourceOptions } from './source.js';
import type { Uplink } from './uplink.js';

export interface CaptureDeps {
  deviceId: string;
  source: SourceOptions;
  bus: Bus;
  head: Head;
  uplink: Uplink;
  /** Frames per second in force (read per frame: a config may change it); 0: as fast as
   * the uplink takes them. */
  fps: () => number;
  /** Send each sample's name in its frame. */
  tagFrames: boolean;
  /** The agent's wire format: a frame's bytes are told as it sends them in a steady
   * stream (v2: in its context). */
  wire: 'v1' | 'v2';
}

export class Capture {
  // Ids start high so every frame id costs the same 5 header bytes.
  private nextId = randomInt(0x1000_0000, 0x7fff_ffff);
  /** Samples taken from the source so far (the next sample's index). */
  private taken = 0;
  private stopping = false;
  /** The frame being encoded and handed to the uplink, if any. */
  private sending: Promise<void> | null = null;

  constructor(private readonly d: CaptureDeps) {}

  /** Stream the source until it ends or stop(). */
  async run(): Promise<void> {
    const { uplink } = this.d;
    let next = performance.now();
    const source = frameSource(this.d.source);
    try {
      for (;;) {
        if (this.stopping) break;
        await uplink.room();
        if (this.stopping) break;
        const fps = this.d.fps();
        const interval = fps > 0 ? 1000 / fps : 0;
        if (interval > 0) {
          const wait = next - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          next = Math.max(next + interval, performance.now() - interval);
        }
        const s = await source.next();
        if (s.done || this.stopping) break;
        this.sending = this.send(s.value, this.taken++);
        try {
          await this.sending;
        } finally {
          this.sending = null;
        }
      }
    } finally {
      await source.return(undefined);
    }
  }

  /** Encode one sample and hand its frame to the uplink. */
  private async send(s: Sample, index: number): Promise<void> {
    if (this.stopping) return;
    const frameId = this.nextId;
    this.nextId = (this.nextId + 1) >>> 0;
    const t0 = performance.now();
    const capturedAt = Date.now();
    let enc;
    try {
      enc = await this.d.head.use((pipe) => pipe.encode(s, frameId, capturedAt, this.d.tagFrames));
    } catch (e) {
      // One bad image must not stop a camera: skip it, count it, say so.
      const err = e instanceof Error ? e.message : String(e);
      log.warn({ device: this.d.deviceId, sample: s.name, err }, 'skipped');
      this.d.bus.emit('skipped', s.name, err);
      return;
    }
    const frame = Buffer.from(enc.frame.buffer, enc.frame.byteOffset, enc.frame.byteLength);
    const tag = this.d.tagFrames ? frameTag(s.name) : undefined;
    const frameBytes =
      this.d.wire === 'v2' ? v2FrameBytes(enc.payloadBytes, tag) : enc.frame.byteLength;
    if (!(await this.d.uplink.put(frameId, capturedAt, t0, frame))) return;
    this.d.bus.emit('frame', {
      frameId,
      sample: { name: s.name, index },
      frameBytes,
      payloadBytes: enc.payloadBytes,
      headMs: enc.headMs,
    });
  }

  stop(): void {
    this.stopping = true;
  }

  /** Resolves once the frame being encoded at the stop (if any) is in the uplink's hands:
   * taken from the source, it is sent and answered like the others, not counted lost
   * unsent. */
  async idle(): Promise<void> {
    await this.sending?.catch(() => undefined); // (run() reports its failure)
  }
}
