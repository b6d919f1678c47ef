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
// With standard (non-optimized) Huffman tables and a fixed quality and chroma
// subsampling, every header byte up to the end of the SOS segment is the same for
// every image of one size, and only the frame header's height and width change with
// the size. Both ends build that header from a blank image; only the picture's size
// and the entropy-coded scan travel, and the edge re-attaches header and EOI.

const SOS = 0xda;
const headerCache = new Map<number, Uint8Array>(); // per quality

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

const SOF0 = 0xc0;
/** Largest picture a jpeg-scan payload may declare (pixels): as a frame (core/split/plan.ts). */
export const JPEG_SCAN_MAX_PIXELS = 4096 * 4096;
/** Bytes before the scan: the picture's width and height (uint16 big-endian each). */
const SIZE_BYTES = 4;

/** The shared header at quality `quality` for a width x height picture: one built from
 * a blank image per quality, its frame header (SOF0) given this size. Only the SOF0
 * height and width depend on the size; the encoder checks that it wrote the same. */
async function sharedHeader(width: number, height: number, quality: number): Promise<Uint8Array> {
  let h = headerCache.get(quality);
  if (!h) {
    const blank = { data: new Uint8Array(16 * 16 * 3), width: 16, height: 16 };
    const jpg = await baselineJpeg(blank, quality);
    h = jpg.slice(0, scanStart(jpg));
    headerCache.set(quality, h);
  }
  const out = h.slice();
  const sof = sof0At(out);
  out[sof + 5] = height >> 8;
  out[sof + 6] = height & 0xff;
  out[sof + 7] = width >> 8;
  out[sof + 8] = width & 0xff;
  return out;
}

/** Offset of the SOF0 marker in a baseline JPEG header. */
function sof0At(header: Uint8Array): number {
  let i = 2;
  while (i + 4 <= header.length) {
    if (header[i + 1] === SOF0) return i;
    i += 2 + ((header[i + 2]! << 8) | header[i + 3]!);
  }
  throw new CodecError('jpeg-scan: no baseline frame header (SOF0)');
}

/**
 * JPEG with the tables shared by both ends, at any picture size: the payload is the
 * picture's width and height (2 + 2 bytes) and the entropy-coded scan. Both ends build
 * the same header for that size and quality (version 2; version 1 was 32x32 only, with
 * no size bytes).
 */
export const jpegScanCodec: ImageCodec = {
  kind: 'image',
  id: IMAGE_CODEC_IDS['jpeg-scan'],
  name: 'jpeg-scan',
  version: 2,
  points: qualities('jpeg-scan', [90, 75, 50, 25, 10]),
  async encode(img, point) {
    const q = pointOf(this, point).quality!;
    if (
      img.width > 0xffff ||
      img.height > 0xffff ||
      img.width * img.height > JPEG_SCAN_MAX_PIXELS
    ) {
      throw new CodecError(`jpeg-scan: a ${img.width}x${img.height} picture is too large`);
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
    const out = new Uint8Array(SIZE_BYTES + jpg.length - 2 - start);
    out.set([img.width >> 8, img.width & 0xff, img.height >> 8, img.height & 0xff]);
    out.set(jpg.subarray(start, jpg.length - 2), SIZE_BYTES);
    return out;
  },
  async decode(bytes, point) {
    const q = pointOf(this, point).quality!;
    if (bytes.length <= SIZE_BYTES) throw new CodecError('jpeg-scan: payload too short');
    const width = (bytes[0]! << 8) | bytes[1]!;
    const height = (bytes[2]! << 8) | bytes[3]!;
    if (width === 0 || height === 0 || width * height > JPEG_SCAN_MAX_PIXELS) {
      throw new CodecError(`jpeg-scan: a ${width}x${height} picture is out of bounds`);
    }
    const header = await sharedHeader(width, height, q);
    const scan = bytes.subarray(SIZE_BYTES);
    const jpg = new Uint8Array(header.length + scan.length + 2);
    jpg.set(header);
    jpg.set(scan, header.length);
    jpg.set([0xff, 0xd9], header.length + scan.length);
    const img = await decodeChecked('jpeg-scan', jpg);
    if (img.width !== width || img.height !== height) {
      throw new CodecError(
        `jpeg-scan: decoded ${img.width}x${img.height}, declared ${width}x${height}`,
      );
    }
    return img;
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
