/**
 * Input-offload codecs: the device sends the image itself and the edge runs the whole
 * model. These are the strongest honest baselines the split codecs are measured against
 * (../shared/BENCHMARKS.md): JPEG, JPEG with shared static tables, WebP and PNG.
 *
 * Ids are pinned beside the feature codecs' (core/codec/ids.ts).
 */
import type { Sharp } from 'sharp';
import { decodeImage, loadSharp, type RgbImage } from '../image/image.js';
import { IMAGE_CODEC_IDS } from './ids.js';
import { checkPoint, CodecError, type ImageCodec } from './types.js';

export type { ImageCodec } from './types.js';

const pointOf = checkPoint;

async function raw(img: RgbImage): Promise<Sharp> {
  const sharp = await loadSharp();
  return sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } });
}

async function decodeChecked(name: string, bytes: Uint8Array): Promise<RgbImage> {
  try {
    return await decodeImage(bytes, true);
  } catch (e) {
    throw new CodecError(`${name}: undecodable image: ${(e as Error).message}`);
  }
}

const qualities = (method: string, qs: number[], first = 0) =>
  qs.map((q, i) => ({ index: first + i, label: `q${q}`, method, quality: q }));

export const jpegCodec: ImageCodec = {
  kind: 'image',
  id: IMAGE_CODEC_IDS.jpeg,
  name: 'jpeg',
  version: 1,
  points: [
    { index: 0, label: 'stored', method: 'jpeg' },
    ...qualities('jpeg', [90, 75, 50, 25, 10], 1),
  ],
  async encode(img, point, stored) {
    const p = pointOf(this, point);
    if (p.quality === undefined) {
      if (!stored) throw new CodecError('jpeg/stored needs the stored file');
      return stored;
    }
    // Optimized Huffman tables per image: the strongest plain-JPEG file.
    const buf = await (
      await raw(img)
    )
      .jpeg({ quality: p.quality, optimiseCoding: true })
      .toBuffer();
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  },
  async decode(bytes, point) {
    pointOf(this, point);
    return decodeChecked('jpeg', bytes);
  },
};

// --- JPEG with tables shared by both ends -------------------------------------------
//
// With standard (non-optimized) Huffman tables and a fixed quality, size and chroma
// subsampling, every header byte up to the end of the SOS segment is the same for
// every image. Both ends build that header once from a blank image; only the
// entropy-coded scan travels, and the edge re-attaches header and EOI.

const SOS = 0xda;
const headerCache = new Map<string, Uint8Array>();

/** Byte offset just past the SOS segment header (start of the scan data). */
function scanStart(jpg: Uint8Array): number {
  if (jpg[0] !== 0xff || jpg[1] !== 0xd8) throw new CodecError('jpeg-scan: not a JPEG');
  let i = 2;
  while (i + 4 <= jpg.length) {
    if (jpg[i] !== 0xff) throw new CodecError('jpeg-scan: marker expected');
    const marker = jpg[i + 1]!;
    const len = (jpg[i + 2]! << 8) | jpg[i + 3]!;
    if (marker === SOS) return i + 2 + len;
    i += 2 + len;
  }
  throw new CodecError('jpeg-scan: no SOS segment');
}

async function baselineJpeg(img: RgbImage, quality: number): Promise<Uint8Array> {
  const buf = await (
    await raw(img)
  )
    .jpeg({ quality, optimiseCoding: false, progressive: false, chromaSubsampling: '4:2:0' })
    .toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

async function sharedHeader(width: number, height: number, quality: number): Promise<Uint8Array> {
  const key = `${width}x${height}@${quality}`;
  let h = headerCache.get(key);
  if (!h) {
    const blank = { data: new Uint8Array(width * height * 3), width, height };
    const jpg = await baselineJpeg(blank, quality);
    h = jpg.slice(0, scanStart(jpg));
    headerCache.set(key, h);
  }
  return h;
}

/** Image size the jpeg-scan codec is set up for (both ends must agree; CIFAR-10: 32x32). */
export const JPEG_SCAN_SIZE = { width: 32, height: 32 };

export const jpegScanCodec: ImageCodec = {
  kind: 'image',
  id: IMAGE_CODEC_IDS['jpeg-scan'],
  name: 'jpeg-scan',
  version: 1,
  points: qualities('jpeg-scan', [90, 75, 50, 25, 10]),
  async encode(img, point) {
    const q = pointOf(this, point).quality!;
    if (img.width !== JPEG_SCAN_SIZE.width || img.height !== JPEG_SCAN_SIZE.height) {
      throw new CodecError(
        `jpeg-scan is set up for ${JPEG_SCAN_SIZE.width}x${JPEG_SCAN_SIZE.height} images`,
      );
    }
    const jpg = await baselineJpeg(img, q);
    const start = scanStart(jpg);
    const header = await sharedHeader(img.width, img.height, q);
    if (start !== header.length || !jpg.subarray(0, start).every((b, i) => b === header[i])) {
      throw new CodecError('jpeg-scan: encoder header differs from the shared one');
    }
    if (jpg[jpg.length - 2] !== 0xff || jpg[jpg.length - 1] !== 0xd9) {
      throw new CodecError('jpeg-scan: encoder output has no EOI');
    }
    return jpg.slice(start, jpg.length - 2);
  },
  async decode(bytes, point) {
    const q = pointOf(this, point).quality!;
    const header = await sharedHeader(JPEG_SCAN_SIZE.width, JPEG_SCAN_SIZE.height, q);
    const jpg = new Uint8Array(header.length + bytes.length + 2);
    jpg.set(header);
    jpg.set(bytes, header.length);
    jpg.set([0xff, 0xd9], header.length + bytes.length);
    return decodeChecked('jpeg-scan', jpg);
  },
};

/** A codec whose bytes are a whole image file that sharp writes and reads. */
function fileCodec(
  id: number,
  name: string,
  points: ImageCodec['points'],
  write: (img: Sharp, quality: number | undefined) => Sharp,
): ImageCodec {
  return {
    kind: 'image',
    id,
    name,
    version: 1,
    points,
    async encode(img, point) {
      const buf = await write(await raw(img), pointOf(this, point).quality).toBuffer();
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    },
    async decode(bytes, point) {
      pointOf(this, point);
      return decodeChecked(name, bytes);
    },
  };
}

export const webpCodec = fileCodec(
  IMAGE_CODEC_IDS.webp,
  'webp',
  qualities('webp', [90, 75, 50, 25, 10]),
  (img, q) => img.webp({ quality: q, effort: 6 }),
);

export const pngCodec = fileCodec(
  IMAGE_CODEC_IDS.png,
  'png',
  [{ index: 0, label: 'lossless', method: 'png' }],
  (img) => img.png({ compressionLevel: 9, adaptiveFiltering: true }),
);

export const imageCodecs: readonly ImageCodec[] = Object.freeze([
  jpegCodec,
  jpegScanCodec,
  webpCodec,
  pngCodec,
]);
