/**
 * Images: decoding to RGB pixels and the model's input preprocessing.
 *
 * Preprocessing is defined by the bundle manifest (the toolkit writes it from
 * models/splitfleet_models/preprocess.py) and applied here, once, for every caller.
 */
import sharp from 'sharp';
import type { Tensor } from '../tensor.js';

/** 8-bit RGB pixels, row-major HWC. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export interface Preprocessing {
  layout: 'NCHW';
  size: [number, number];
  colorSpace: 'RGB';
  /** pixels are divided by this first (255) */
  pixelDivisor: number;
  mean: [number, number, number];
  std: [number, number, number];
  resize: 'none';
}

// One decode at a time per call; sharp's own thread pool is sized to the machine.
sharp.concurrency(1);

/**
 * Decode JPEG/PNG/WebP bytes to RGB (alpha dropped). Throws on undecodable input.
 * `strict` also refuses images the decoder only warns about (truncated or corrupt data
 * it would paint grey): the edge uses it for bytes from the network.
 */
export async function decodeImage(bytes: Uint8Array, strict = false): Promise<RgbImage> {
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

/** RGB pixels -> normalized float32 [1, 3, H, W], as the model was trained. */
export function preprocess(img: RgbImage, p: Preprocessing): Tensor {
  const [h, w] = p.size;
  if (img.width !== w || img.height !== h) {
    throw new Error(`image is ${img.width}x${img.height}, the model wants ${w}x${h}`);
  }
  const plane = w * h;
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    const m = Math.fround(p.mean[c]!);
    const s = Math.fround(p.std[c]!);
    const d = p.pixelDivisor;
    for (let i = 0; i < plane; i++) {
      // Same operations as the toolkit, rounded to float32 at each step: (x / d - mean) / std.
      out[c * plane + i] = Math.fround(Math.fround(img.data[i * 3 + c]! / d) - m) / s;
    }
  }
  return { data: out, shape: [1, 3, h, w] };
}
