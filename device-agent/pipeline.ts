/**
 * The device half of the data path for one image, as its split plan (core/split/plan.ts)
 * says: decode -> preprocess -> device network -> codec encode -> frame; or, with an input
 * codec (jpeg, jpeg-scan, webp, png) and a backbone, full offload: decode -> image codec
 * encode -> frame (no network on the device; the edge runs the whole model).
 */
import type { Codec } from '../core/codec/types.js';
import type { Sample } from '../core/data/cifar.js';
import type { Engine, Session } from '../core/engine/engine.js';
import { onnxEngine } from '../core/engine/onnx.js';
import { loadNetwork } from '../core/engine/select.js';
import { decodeImage, preprocess, type RgbImage } from '../core/image/image.js';
import type { Bundle } from '../core/model/bundle.js';
import { encodePayload, planFrame, splitPlan, type SplitPlan } from '../core/split/plan.js';

export interface Encoded {
  frame: Uint8Array;
  payloadBytes: number;
  headMs: number;
  encodeMs: number;
}

export class HeadPipeline {
  private constructor(
    readonly bundle: Bundle,
    readonly plan: SplitPlan,
    /** null: input offload (the plan has no device network). */
    private readonly head: Session | null,
  ) {}

  static async create(
    bundle: Bundle,
    codecName: string,
    point: number,
    opts: { engine?: Engine; threads?: number } = {},
  ): Promise<HeadPipeline> {
    const plan = splitPlan(bundle, codecName, point);
    if (plan.deviceNetwork === null) return new HeadPipeline(bundle, plan, null);
    // the engine's file of the network: ONNX, or the bundle's tfjs export (select.ts)
    const { session } = await loadNetwork(opts.engine ?? onnxEngine, bundle, plan.deviceNetwork, {
      threads: opts.threads ?? 1,
    });
    return new HeadPipeline(bundle, plan, session);
  }

  get codec(): Codec {
    return this.plan.codec;
  }

  get point(): number {
    return this.plan.point.index;
  }

  async pixels(s: Sample): Promise<RgbImage> {
    if (s.rgb) return s.rgb;
    if (!s.bytes) throw new Error(`sample ${s.name} has neither bytes nor pixels`);
    return decodeImage(s.bytes);
  }

  /** `tag`: also send the sample's name in the frame (frame.ts). */
  async encode(s: Sample, frameId: number, captureTs = Date.now(), tag = false): Promise<Encoded> {
    const px = await this.pixels(s);
    let t0: number, t1: number, out;
    if (!this.head) {
      // input offload: the image itself, re-encoded (the stored file for jpeg/stored)
      t0 = t1 = performance.now();
      out = await encodePayload(this.plan, { image: px, ...(s.bytes ? { stored: s.bytes } : {}) });
    } else {
      const x = preprocess(px, this.bundle.manifest.preprocessing);
      t0 = performance.now();
      const feats = await this.head.run(x);
      t1 = performance.now();
      out = await encodePayload(this.plan, {
        features: { data: feats.data, shape: feats.shape.slice(1) },
      });
    }
    const frame = planFrame(this.plan, {
      frameId,
      payload: out.payload,
      shape: out.shape,
      captureTs,
      ...(tag ? { tag: frameTag(s.name) } : {}),
    });
    const t2 = performance.now();
    return { frame, payloadBytes: out.payload.byteLength, headMs: t1 - t0, encodeMs: t2 - t1 };
  }

  async close(): Promise<void> {
    await this.head?.close();
  }
}

/** A sample name as a frame tag: printable ASCII, at most 128 characters (the end kept). */
export function frameTag(name: string): string {
  const t = name.replace(/[^\x20-\x7e]/g, '?');
  return (t.length > 128 ? t.slice(-128) : t) || '?';
}
