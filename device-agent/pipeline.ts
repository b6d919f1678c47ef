/**
 * The device half of the data path for one image:
 *   decode -> preprocess -> head -> codec encode -> frame,
 * or, with an input codec (core/codec/image.ts: jpeg, jpeg-scan, webp, png) and a
 * backbone, full offload: decode -> image codec encode -> frame (no head on the device).
 */
import { imageCodecs, type ImageCodec } from '../core/codec/image.js';
import { codecByName } from '../core/codec/registry.js';
import { checkPoint, CodecError, type FeatureCodec } from '../core/codec/types.js';
import type { Sample } from '../core/data/cifar.js';
import type { Engine, Session } from '../core/engine/engine.js';
import { onnxEngine } from '../core/engine/onnx.js';
import { loadNetwork } from '../core/engine/select.js';
import { decodeImage, preprocess, type RgbImage } from '../core/image/image.js';
import type { Bundle } from '../core/model/bundle.js';
import { encodeFrame } from '../core/wire/frame.js';

export interface Encoded {
  frame: Uint8Array;
  payloadBytes: number;
  headMs: number;
  encodeMs: number;
}

export class HeadPipeline {
  private constructor(
    readonly bundle: Bundle,
    readonly codec: FeatureCodec | ImageCodec,
    readonly point: number,
    /** null: input offload (the codec is an image codec, the edge runs the whole model). */
    private readonly head: Session | null,
  ) {}

  static async create(
    bundle: Bundle,
    codecName: string,
    point: number,
    opts: { engine?: Engine; threads?: number } = {},
  ): Promise<HeadPipeline> {
    const m = bundle.manifest;
    let role = 'head';
    let codec: FeatureCodec;
    const image = imageCodecs.find((c) => c.name === codecName);
    if (image) {
      if (m.kind !== 'backbone') {
        throw new CodecError(`input codec ${codecName} needs a backbone model, not ${m.name}`);
      }
      if (!image.points.some((p) => p.index === point)) {
        throw new CodecError(`codec ${codecName} has no operating point ${point}`);
      }
      return new HeadPipeline(bundle, image, point, null);
    }
    if (m.kind === 'codec') {
      // A learned codec's bundle carries the codec and one device network per point.
      codec = bundle.codec!;
      if (codecName !== codec.name) {
        throw new CodecError(`model ${m.name} is a ${codec.name} codec, not ${codecName}`);
      }
      checkPoint(codec, point);
      role = m.codec.points.find((p) => p.index === point)!.head;
    } else {
      codec = codecByName(codecName);
      checkPoint(codec, point);
    }
    // the engine's file of the head: ONNX, or the bundle's tfjs export (select.ts)
    const { session: head } = await loadNetwork(opts.engine ?? onnxEngine, bundle, role, {
      threads: opts.threads ?? 1,
    });
    return new HeadPipeline(bundle, codec, point, head);
  }

  async pixels(s: Sample): Promise<RgbImage> {
    if (s.rgb) return s.rgb;
    if (!s.bytes) throw new Error(`sample ${s.name} has neither bytes nor pixels`);
    return decodeImage(s.bytes);
  }

  /** `tag`: also send the sample's name in the frame (frame.ts). */
  async encode(s: Sample, frameId: number, captureTs = Date.now(), tag = false): Promise<Encoded> {
    const m = this.bundle.manifest;
    const px = await this.pixels(s);
    let t0: number, t1: number, payload: Uint8Array, shape: number[];
    if (!this.head) {
      // input offload: the image itself, re-encoded (the stored file for jpeg/stored)
      t0 = t1 = performance.now();
      payload = await (this.codec as ImageCodec).encode(px, this.point, s.bytes);
      shape = [3, px.height, px.width];
    } else {
      const x = preprocess(px, m.preprocessing);
      t0 = performance.now();
      const feats = await this.head.run(x);
      t1 = performance.now();
      shape = feats.shape.slice(1);
      payload = (this.codec as FeatureCodec).encode({ data: feats.data, shape }, this.point);
    }
    const frame = encodeFrame({
      frameId,
      modelId: m.modelId,
      modelVersion: m.version,
      codecId: this.codec.id,
      codecVersion: this.codec.version,
      point: this.point,
      shape,
      captureTs,
      payload,
      ...(tag ? { tag: frameTag(s.name) } : {}),
    });
    const t2 = performance.now();
    return { frame, payloadBytes: payload.byteLength, headMs: t1 - t0, encodeMs: t2 - t1 };
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
