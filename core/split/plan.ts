/**
 * A split plan: how one sample goes device -> bytes -> edge -> logits for a bundle, a
 * codec and an operating point. Every path has a device half and an edge half:
 *
 *   feature codec, backbone      device: head -> encode      edge: decode -> tail
 *   learned codec (its bundle)   device: the point's head    edge: decode -> the point's
 *                                  -> encode symbols             tail
 *   image codec, backbone        device: encode the picture  edge: decode -> preprocess
 *                                                                -> head -> tail
 *
 * The device's pipeline, the edge's decoder and `bench rate` all take their halves from
 * here, so what a frame carries (model, codec, point, shape) is decided in one place.
 */
import { lookupCodec } from '../codec/registry.js';
import {
  checkPoint,
  CodecError,
  type Codec,
  type FeatureCodec,
  type ImageCodec,
  type OperatingPoint,
} from '../codec/types.js';
import { preprocess, type RgbImage } from '../image/image.js';
import type { Manifest } from '../model/manifest.js';
import type { Tensor } from '../tensor.js';
import { encodeV2 } from '../wire/frame-v2.js';
import { encodeFrame } from '../wire/frame.js';

/** Largest picture an image frame may declare (pixels): decoding is bounded by it. */
export const MAX_IMAGE_PIXELS = 4096 * 4096;

interface PlanBase {
  readonly manifest: Manifest;
  readonly point: OperatingPoint;
  /** Device half: the network (file role) the device runs before encoding; null when
   * the device sends the picture itself. */
  readonly deviceNetwork: string | null;
  /** Edge half: the networks (file roles) run after decoding, in order. */
  readonly edgeNetworks: readonly string[];
  /** Key of the edge half's networks within the bundle: frames with the same key run
   * as one batch. */
  readonly edgeKey: string;
}

/** The split tensor (or a learned codec's symbols) travels. */
export interface FeaturePlan extends PlanBase {
  readonly kind: 'feature';
  readonly codec: FeatureCodec;
  /** The shape every frame of this plan carries. */
  readonly frameShape: readonly number[];
}

/** The picture travels (input offload); the edge runs the whole model. */
export interface ImagePlan extends PlanBase {
  readonly kind: 'image';
  readonly codec: ImageCodec;
}

export type SplitPlan = FeaturePlan | ImagePlan;

/** The codec a bundle's frames name by `ref` (id or name): a learned codec's bundle
 * takes its own codec only; a backbone takes any codec of the registry. Throws
 * CodecError saying why not. */
export function codecOf(
  bundle: { manifest: Manifest; codec: FeatureCodec | null },
  ref: number | string,
): Codec {
  const own = bundle.codec;
  if (bundle.manifest.kind === 'codec') {
    if (!own || (typeof ref === 'number' ? own.id !== ref : own.name !== ref)) {
      const name = own ? `${own.name} (${own.id})` : bundle.manifest.codec.method;
      throw new CodecError(
        typeof ref === 'number'
          ? `model ${bundle.manifest.name} takes codec ${name}, not ${ref}`
          : `model ${bundle.manifest.name} is a ${own?.name ?? name} codec, not ${ref}`,
      );
    }
    return own;
  }
  return lookupCodec(ref);
}

/** The plan of `codec` at `point` for a bundle (codecOf, then the point). Throws
 * CodecError when they do not go together. */
export function splitPlan(
  bundle: { manifest: Manifest; codec: FeatureCodec | null },
  codecRef: number | string | Codec,
  point: number,
): SplitPlan {
  const m = bundle.manifest;
  const codec = typeof codecRef === 'object' ? codecRef : codecOf(bundle, codecRef);
  const op = checkPoint(codec, point);
  if (codec.kind === 'image') {
    if (m.kind !== 'backbone') {
      throw new CodecError(`input codec ${codec.name} needs a backbone model, not ${m.name}`);
    }
    return {
      kind: 'image',
      manifest: m,
      codec,
      point: op,
      deviceNetwork: null,
      edgeNetworks: ['head', 'tail'],
      edgeKey: 'head+tail',
    };
  }
  if (m.kind === 'codec') {
    const p = m.codec.points.find((x) => x.index === point)!;
    return {
      kind: 'feature',
      manifest: m,
      codec,
      point: op,
      deviceNetwork: p.head,
      edgeNetworks: [p.tail],
      edgeKey: p.tail,
      frameShape: p.symbolShape,
    };
  }
  return {
    kind: 'feature',
    manifest: m,
    codec,
    point: op,
    deviceNetwork: 'head',
    edgeNetworks: ['tail'],
    edgeKey: 'tail',
    frameShape: m.split.tensorShape,
  };
}

/** What the device half encodes: the device network's output for one sample (no batch
 * axis), or the picture (with the file as the source holds it, for jpeg's "stored"). */
export type DeviceOutput = { features: Tensor } | { image: RgbImage; stored?: Uint8Array };

/** Device half after its network: the payload and the shape the frame declares. */
export async function encodePayload(
  plan: SplitPlan,
  out: DeviceOutput,
): Promise<{ payload: Uint8Array; shape: number[] }> {
  if (plan.kind === 'image') {
    if (!('image' in out)) throw new CodecError(`${plan.codec.name} encodes pictures`);
    const img = out.image;
    const payload = await plan.codec.encode(img, plan.point.index, out.stored);
    return { payload, shape: [3, img.height, img.width] };
  }
  if (!('features' in out)) throw new CodecError(`${plan.codec.name} encodes tensors`);
  const shape = [...out.features.shape];
  return { payload: plan.codec.encode(out.features, plan.point.index), shape };
}

/** The frame of a payload of this plan. */
export function planFrame(
  plan: SplitPlan,
  f: { frameId: number; payload: Uint8Array; shape: number[]; captureTs?: number; tag?: string },
): Uint8Array {
  return encodeFrame({
    frameId: f.frameId,
    modelId: plan.manifest.modelId,
    modelVersion: plan.manifest.version,
    codecId: plan.codec.id,
    codecVersion: plan.codec.version,
    point: plan.point.index,
    shape: f.shape,
    captureTs: f.captureTs ?? Date.now(),
    payload: f.payload,
    ...(f.tag !== undefined ? { tag: f.tag } : {}),
  });
}

/** Wire formats a frame goes in (docs/PROTOCOL.md). */
export type WireFormat = 'v1' | 'v2';

/**
 * Bytes of the frame of a payload of this plan as it goes on the wire: v1 (every field in
 * every frame) or v2 (a frame of a steady stream, in the context its device announced;
 * untagged, alone in its packet). Benchmarks report framed bytes with this.
 */
export function framedBytes(
  plan: SplitPlan,
  f: { payload: Uint8Array; shape: number[]; frameId?: number },
  wire: WireFormat,
): number {
  if (wire === 'v2') return encodeV2(0, { seq: 0, ts16: 0, payload: f.payload }).byteLength;
  const frameId = f.frameId ?? 0x7fff_ffff; // a 5-byte id, as agents' ids are
  return planFrame(plan, { frameId, payload: f.payload, shape: f.shape }).byteLength;
}

/** Why a frame shape does not fit the plan, or null when it does. */
export function shapeProblem(plan: SplitPlan, shape: readonly number[]): string | null {
  if (plan.kind === 'image') {
    const [c, h, w] = shape;
    if (shape.length !== 3 || c !== 3 || h! * w! > MAX_IMAGE_PIXELS) {
      return `shape [${shape.join(',')}] is not a picture [3, H, W] of at most ${MAX_IMAGE_PIXELS} pixels`;
    }
    return null;
  }
  const want = plan.frameShape;
  if (shape.length !== want.length || shape.some((d, i) => d !== want[i])) {
    return `shape [${shape.join(',')}] does not match the model's [${want.join(',')}]`;
  }
  return null;
}

/** Edge half before its networks: a payload -> the first edge network's input for one
 * sample (no batch axis). Throws CodecError on a payload that does not decode to `shape`. */
export async function decodePayload(
  plan: SplitPlan,
  payload: Uint8Array,
  shape: readonly number[],
  /** The frame's codec version (default: the codec's own). */
  version?: number,
): Promise<Tensor> {
  if (plan.kind === 'feature') return plan.codec.decode(payload, shape, plan.point.index, version);
  const img = await plan.codec.decode(payload, plan.point.index);
  if (img.height !== shape[1] || img.width !== shape[2]) {
    throw new CodecError(
      `${plan.codec.name}: a ${img.width}x${img.height} picture in a frame of shape [${shape.join(',')}]`,
    );
  }
  const t = preprocess(img, plan.manifest.preprocessing);
  return { data: t.data, shape: t.shape.slice(1) };
}
