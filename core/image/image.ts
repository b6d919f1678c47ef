/**
 * Images: decoding to RGB pixels and the model's input preprocessing.
 *
 * Preprocessing is defined by the bundle manifest (the toolkit writes it from
 * models/splitfleet_models/preprocess.py) and applied here, once, for every caller.
 */
import type { default as Sharp } from 'sharp';
import type { Tensor } from '../tensor.js';

/** 8-bit RGB pixels, row-major HWC. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** A bundle manifest's `preprocessing` (core/model/manifest.ts checks it). */
export interface Preprocessing {
  /** Axis order of the network's input: [1, 3, H, W] or [1, H, W, 3]. */
  layout: 'NCHW' | 'NHWC';
  /** Network input [H, W]. */
  size: [number, number];
  /** Channel order of the network's input (the image is decoded as RGB). */
  colorSpace: 'RGB' | 'BGR';
  /** pixels are divided by this first (255) */
  pixelDivisor: number;
  /** Per input channel, in the order of `colorSpace` (BGR: mean[0] is blue's). */
  mean: [number, number, number];
  std: [number, number, number];
  /** 'none': scaled just enough to cover `size`; 'shorter': the shorter side scaled to
   * `resizeShorter` (ImageNet's "resize 256, crop 224"). A centre crop follows either. */
  resize: 'none' | 'shorter';
  resizeShorter?: number;
}

let sharpLoading: Promise<typeof Sharp> | undefined;

/** sharp (libvips), loaded on first use: a process that never touches an image (the
 * Node-RED package, a decoder process with only feature frames) does not load it. */
export function loadSharp(): Promise<typeof Sharp> {
  return (sharpLoading ??= import('sharp').then((m) => {
    // One decode at a time per call; sharp's own thread pool is sized to the machine.
    m.default.concurrency(1);
    return m.default;
  }));
}

/**
 * Decode JPEG/PNG/WebP bytes to RGB (alpha dropped). Throws on undecodable input.
 * `strict` also refuses images the decoder only warns about (truncated or corrupt data
 * it would paint grey): the edge uses it for bytes from the network.
 */
export async function decodeImage(bytes: Uint8Array, strict = false): Promise<RgbImage> {
  const sharp = await loadSharp();
  const { data, info } = await sharp(bytes, { failOn: strict ? 'warning' : 'error' })
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decoded image has ${info.channels} channels, want 3`);
  return {
    data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    width: info.width,
    height: info.height,
  };
}

/**
 * The size an h x w image is scaled to before the center crop: the smallest that covers
 * `size` with the aspect kept (integer arithmetic, as the toolkit's `fit_size`).
 */
export function fitSize(h: number, w: number, size: readonly [number, number]): [number, number] {
  const [th, tw] = size;
  if (th * w >= tw * h) return [th, Math.max(tw, Math.floor((w * th) / h))];
  return [Math.max(th, Math.floor((h * tw) / w)), tw];
}

/** The size an h x w image is scaled to when its shorter side becomes `s` (integer
 * arithmetic, as the toolkit's `shorter_size`). */
export function shorterSize(h: number, w: number, s: number): [number, number] {
  if (h <= w) return [s, Math.max(s, Math.floor((w * s) / h))];
  return [Math.max(s, Math.floor((h * s) / w)), s];
}

/**
 * The size an h x w image is scaled to before the centre crop to `size`: covering it
 * (`shorter` undefined), or with its shorter side scaled to `shorter` (then covering
 * `size` if that is still smaller), as the toolkit's `fit`.
 */
export function resizedSize(
  h: number,
  w: number,
  size: readonly [number, number],
  shorter?: number,
): [number, number] {
  if (shorter === undefined) return fitSize(h, w, size);
  const [rh, rw] = shorterSize(h, w, shorter);
  return rh < size[0] || rw < size[1] ? fitSize(rh, rw, size) : [rh, rw];
}

/** Taps of antialiased bilinear resampling along one axis (PIL's filter, as torch's
 * interpolate(antialias=True, align_corners=False)): for each output index, the first
 * input index and the normalized weights. */
function axisWeights(inSize: number, outSize: number): { start: Int32Array; w: Float64Array[] } {
  const scale = inSize / outSize;
  const support = scale >= 1 ? scale : 1;
  const inv = scale >= 1 ? 1 / scale : 1;
  const start = new Int32Array(outSize);
  const w: Float64Array[] = [];
  for (let i = 0; i < outSize; i++) {
    const center = scale * (i + 0.5);
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    const taps = new Float64Array(Math.max(hi - lo, 0));
    let total = 0;
    for (let j = 0; j < taps.length; j++) {
      const x = Math.abs((j + lo - center + 0.5) * inv);
      taps[j] = x < 1 ? 1 - x : 0;
      total += taps[j]!;
    }
    if (total !== 0) for (let j = 0; j < taps.length; j++) taps[j]! /= total;
    start[i] = lo;
    w.push(taps);
  }
  return { start, w };
}

/**
 * RGB pixels of any size -> float32 pixels (0..255, planar RGB CHW) of `size`: scaled
 * to resizedSize (antialiased bilinear, width first, then height; not scaled when that
 * is the image's size), then centre-cropped with offsets rounded down. The toolkit's
 * `fit` in models/splitfleet_models/preprocess.py is the same definition.
 */
export function fit(
  img: RgbImage,
  size: readonly [number, number],
  shorter?: number,
): Float32Array {
  const [th, tw] = size;
  const { width: W, height: H, data } = img;
  if (data.length !== W * H * 3) throw new Error(`image data is not ${W}x${H} RGB`);
  if (th < 1 || tw < 1 || (shorter !== undefined && shorter < 1))
    throw new Error(`cannot fit an image to ${th}x${tw}${shorter ? ` (shorter ${shorter})` : ''}`);
  const [rh, rw] = resizedSize(H, W, size, shorter);
  const top = (rh - th) >> 1;
  const left = (rw - tw) >> 1;
  const out = new Float32Array(3 * th * tw);
  const same = rh === H && rw === W;
  const xs = same ? null : axisWeights(W, rw);
  const ys = same ? null : axisWeights(H, rh);
  // width pass over the rows the crop needs: [3][H][tw] as float32 (torch's intermediate)
  const rows = new Float32Array(3 * H * tw);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < tw; x++) {
      const ox = x + left;
      for (let c = 0; c < 3; c++) {
        let v: number;
        if (!xs) v = data[(y * W + ox) * 3 + c]!;
        else {
          const s0 = xs.start[ox]!;
          const taps = xs.w[ox]!;
          v = 0;
          for (let j = 0; j < taps.length; j++) v += data[(y * W + s0 + j) * 3 + c]! * taps[j]!;
        }
        rows[(c * H + y) * tw + x] = v;
      }
    }
  }
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < th; y++) {
      const oy = y + top;
      for (let x = 0; x < tw; x++) {
        let v: number;
        if (!ys) v = rows[(c * H + oy) * tw + x]!;
        else {
          const s0 = ys.start[oy]!;
          const taps = ys.w[oy]!;
          v = 0;
          for (let j = 0; j < taps.length; j++) v += rows[(c * H + s0 + j) * tw + x]! * taps[j]!;
        }
        out[(c * th + y) * tw + x] = v;
      }
    }
  }
  return out;
}

/**
 * RGB pixels -> the network's normalized float32 input, as the model was trained: an
 * image of the model's size under `resize: "none"` is used as is; any other is brought
 * to it by `fit` (cover or shorter side, then centre crop). Then (x / divisor - mean) /
 * std per channel, in the manifest's channel order (RGB or BGR) and layout ([1, 3, H, W]
 * or [1, H, W, 3]).
 */
export function preprocess(img: RgbImage, p: Preprocessing): Tensor {
  const [h, w] = p.size;
  const plane = w * h;
  const out = new Float32Array(3 * plane);
  const d = p.pixelDivisor;
  const shorter = p.resize === 'shorter' ? p.resizeShorter : undefined;
  if (p.resize === 'shorter' && shorter === undefined)
    throw new Error('preprocessing resize "shorter" without resizeShorter');
  const asIs = shorter === undefined && img.width === w && img.height === h;
  // planar RGB source: the image itself (interleaved) or its fitted pixels (planar)
  const px = asIs ? null : fit(img, p.size, shorter);
  const nhwc = p.layout === 'NHWC';
  for (let c = 0; c < 3; c++) {
    const src = p.colorSpace === 'BGR' ? 2 - c : c; // image channel of input channel c
    const m = Math.fround(p.mean[c]!);
    const s = Math.fround(p.std[c]!);
    for (let i = 0; i < plane; i++) {
      const v = px ? px[src * plane + i]! : img.data[i * 3 + src]!;
      // Same operations as the toolkit, rounded to float32 at each step: (x / d - mean) / std.
      out[nhwc ? i * 3 + c : c * plane + i] = Math.fround(Math.fround(v / d) - m) / s;
    }
  }
  return { data: out, shape: nhwc ? [1, h, w, 3] : [1, 3, h, w] };
}
