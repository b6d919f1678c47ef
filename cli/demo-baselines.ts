/**
 * What the demo sets its bytes per frame against, read from the zoo and measured on the
 * demo's own images: which shipped learned codec shows the product at its best, and what
 * sending the image instead would cost (the stored JPEG, the best input codec) beside the
 * float32 split tensor.
 */
import { imageCodecByName } from '../core/codec/registry.js';
import type { ImageCodec } from '../core/codec/image.js';
import { readSamples } from '../core/data/cifar.js';
import { decodeImage, fit, type RgbImage } from '../core/image/image.js';
import type { BackboneManifest, CodecPoint, Manifest } from '../core/model/manifest.js';
import type { ZooBundle } from '../core/model/zoo.js';
import { encodePayload, planFrame, splitPlan } from '../core/split/plan.js';
import { resolveSource, sourceKind } from '../device-agent/source.js';

/** How far below the unsplit model a learned point may be and still be the demo's (2 pt). */
export const DEMO_MAX_DROP = 0.02;

/** The learned codec point the demo runs by default, and the model it is measured against. */
export interface DemoPick {
  bundle: ZooBundle;
  point: CodecPoint;
  /** The unsplit model the codec was trained on (same dataset and backbone). */
  base: ZooBundle;
}

/** The backbone a codec bundle was trained on: same dataset, and the codec's `arch`
 * ("<method> on <backbone arch> at <point>") names its arch; the newest version. */
export function baseOf(codec: Manifest, bundles: readonly ZooBundle[]): ZooBundle | null {
  if (codec.kind !== 'codec') return null;
  let best: ZooBundle | null = null;
  for (const b of bundles) {
    const m = b.manifest;
    if (m.kind !== 'backbone' || m.dataset !== codec.dataset) continue;
    if (!codec.arch.includes(` on ${m.arch} at `)) continue;
    if (!best || m.version > best.manifest.version) best = b;
  }
  return best;
}

/**
 * The shipped learned codec point with the best accuracy per byte among those within
 * DEMO_MAX_DROP of their unsplit model (the manifests' measured top-1 and bits per
 * image); null when none is.
 */
export function pickDemoCodec(bundles: readonly ZooBundle[]): DemoPick | null {
  let pick: (DemoPick & { score: number }) | null = null;
  for (const bundle of bundles) {
    const m = bundle.manifest;
    const base = baseOf(m, bundles);
    if (m.kind !== 'codec' || !base) continue;
    const floor = base.manifest.accuracy.top1 - DEMO_MAX_DROP - 1e-9;
    for (const point of m.codec.points) {
      if (point.top1 < floor || point.bitsPerImage <= 0) continue;
      const score = point.top1 / point.bitsPerImage;
      if (!pick || score > pick.score) pick = { bundle, point, base, score };
    }
  }
  return pick && { bundle: pick.bundle, point: pick.point, base: pick.base };
}

/** Framed bytes per image of one way to send the picture, averaged over the images. */
export interface ImageBaseline {
  /** `jpeg/stored`, `jpeg-scan/q75`, ... */
  codec: string;
  bytesPerFrame: number;
}

export interface ImageBaselines {
  /** Images measured. */
  images: number;
  /** The JPEG files as the source stores them (null: it stores no JPEG files). */
  storedJpeg: ImageBaseline | null;
  /** The smallest input codec among those that keep the unsplit model's accuracy in the
   * benchmark (docs/BENCHMARKS.md: JPEG, JPEG with shared tables, WebP at q75). */
  bestInput: ImageBaseline | null;
}

/** The input codec settings that keep top-1 within about a point of the unsplit model in
 * the benchmark; the demo reports the smallest on its own images. */
export const INPUT_CODEC_CANDIDATES: readonly [string, string][] = [
  ['jpeg', 'q75'],
  ['jpeg-scan', 'q75'],
  ['webp', 'q75'],
];

const isJpeg = (b: Uint8Array | undefined) => Boolean(b && b[0] === 0xff && b[1] === 0xd8);

/** The picture at the model's input size, as a device would send it (8-bit RGB, HWC). */
function atInputSize(img: RgbImage, m: BackboneManifest): RgbImage {
  const [h, w] = m.preprocessing.size;
  if (img.height === h && img.width === w) return img;
  const chw = fit(img, [h, w]);
  const data = new Uint8Array(h * w * 3);
  for (let c = 0; c < 3; c++)
    for (let i = 0; i < h * w; i++) data[i * 3 + c] = Math.round(chw[c * h * w + i]!);
  return { data, width: w, height: h };
}

/**
 * Frame bytes of sending the first `limit` images of `source` as pictures to the unsplit
 * model `base`: each image is framed as the agent frames it (core/split/plan.ts), so the
 * header counts as it does for the demo's own frames. Null when the source is not a
 * folder or archive of images (a camera, a stream).
 */
export async function measureImageBaselines(
  source: string,
  base: BackboneManifest,
  limit = 200,
): Promise<ImageBaselines | null> {
  const bundle = { manifest: base, codec: null };
  const plans = INPUT_CODEC_CANDIDATES.flatMap(([name, label]) => {
    const codec: ImageCodec | undefined = imageCodecByName(name);
    const point = codec?.points.find((p) => p.label === label);
    return codec && point
      ? [{ id: `${name}/${label}`, plan: splitPlan(bundle, codec, point.index), bytes: 0, n: 0 }]
      : [];
  });
  const jpeg = imageCodecByName('jpeg');
  const storedPlan = jpeg ? splitPlan(bundle, jpeg, 0) : null;
  let stored = 0;
  let storedN = 0;
  let images = 0;
  const frameBytes = async (
    plan: ReturnType<typeof splitPlan>,
    out: Parameters<typeof encodePayload>[1],
  ) => {
    const { payload, shape } = await encodePayload(plan, out);
    // one frame id for all: the header's size does not vary with the order measured
    return planFrame(plan, { frameId: 1000, payload, shape }).byteLength;
  };
  if (sourceKind(source) !== 'dataset') return null; // a camera, a stream: nothing stored
  for await (const s of readSamples(resolveSource(source), { limit })) {
    const img = s.rgb ?? (s.bytes ? await decodeImage(s.bytes) : null);
    if (!img) continue;
    images++;
    if (storedPlan && isJpeg(s.bytes)) {
      stored += await frameBytes(storedPlan, { image: img, stored: s.bytes });
      storedN++;
    }
    const sent = atInputSize(img, base);
    for (const p of plans) {
      try {
        p.bytes += await frameBytes(p.plan, { image: sent });
        p.n++;
      } catch {
        // a codec set up for other sizes (jpeg-scan: 32x32) is not a candidate here
      }
    }
  }
  if (images === 0) return null;
  const avg = (bytes: number, n: number) => Math.round((10 * bytes) / n) / 10;
  let bestInput: ImageBaseline | null = null;
  for (const p of plans) {
    if (p.n !== images) continue;
    const b = { codec: p.id, bytesPerFrame: avg(p.bytes, p.n) };
    if (!bestInput || b.bytesPerFrame < bestInput.bytesPerFrame) bestInput = b;
  }
  return {
    images,
    storedJpeg:
      storedN === images ? { codec: 'jpeg/stored', bytesPerFrame: avg(stored, storedN) } : null,
    bestInput,
  };
}
