/**
 * Splitting a byte stream into images, for the stdin and ffmpeg sources. Accepted, mixed
 * freely, each told by its first bytes:
 *   - a JPEG file (FF D8 ... FF D9; markers are walked, so EXIF thumbnails are skipped),
 *   - a PNG file (signature, chunks up to IEND),
 *   - a binary PPM (P6, maxval < 256; what `ffmpeg -c:v ppm -f image2pipe` writes): pixels,
 *   - a 4-byte big-endian length, then that many bytes of an image (JPEG, PNG or WebP).
 *     A length is at most 64 MiB, so its first byte (0..4) never looks like the others.
 */
import type { RgbImage } from '../../core/image/image.js';

/** The most bytes one image may take (a length-prefixed one, or a file in the stream). */
export const MAX_IMAGE_BYTES = 64 * 1024 * 1024;

/** One image from the stream: encoded bytes (JPEG/PNG/WebP, decoded later) or pixels. */
export type StreamImage =
  { bytes: Uint8Array; rgb?: undefined } | { rgb: RgbImage; bytes?: undefined };

export class StreamFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StreamFormatError';
  }
}

const PNG_SIG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** End of the JPEG that starts at 0, or -1 when more bytes are needed. */
function jpegEnd(b: Uint8Array): number {
  let p = 2;
  for (;;) {
    if (p + 2 > b.length) return -1;
    if (b[p] !== 0xff) throw new StreamFormatError(`JPEG: no marker at byte ${p}`);
    const m = b[p + 1]!;
    if (m === 0xff) {
      p++; // fill byte
      continue;
    }
    if (m === 0xd9) return p + 2;
    if ((m >= 0xd0 && m <= 0xd7) || m === 0x01) {
      p += 2;
      continue;
    }
    if (p + 4 > b.length) return -1;
    const len = (b[p + 2]! << 8) | b[p + 3]!;
    if (len < 2) throw new StreamFormatError(`JPEG: bad segment length at byte ${p}`);
    p += 2 + len;
    if (m === 0xda) {
      // entropy-coded data: ends at a marker other than a stuffed 00 or a restart
      for (;;) {
        if (p + 2 > b.length) return -1;
        if (b[p] === 0xff) {
          const n = b[p + 1]!;
          if (n !== 0x00 && !(n >= 0xd0 && n <= 0xd7) && n !== 0xff) break;
          p += n === 0xff ? 1 : 2;
        } else p++;
      }
    }
  }
}

/** End of the PNG that starts at 0, or -1. */
function pngEnd(b: Uint8Array): number {
  let p = 8;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (;;) {
    if (p + 8 > b.length) return -1;
    const len = dv.getUint32(p);
    const type = String.fromCharCode(b[p + 4]!, b[p + 5]!, b[p + 6]!, b[p + 7]!);
    p += 12 + len;
    if (p > MAX_IMAGE_BYTES) throw new StreamFormatError('PNG: larger than 64 MiB');
    if (type === 'IEND') return p <= b.length ? p : -1;
  }
}

/** A P6 header: [width, height, header bytes], or null when more bytes are needed. */
function ppmHeader(b: Uint8Array): [number, number, number] | null {
  const fields: number[] = [];
  let p = 2;
  while (fields.length < 3) {
    if (p >= b.length) return null;
    const c = b[p]!;
    if (c === 0x23) {
      // comment to the end of the line
      while (p < b.length && b[p] !== 0x0a) p++;
      continue;
    }
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
      p++;
      continue;
    }
    let v = 0;
    let digits = 0;
    while (p < b.length && b[p]! >= 0x30 && b[p]! <= 0x39) {
      v = v * 10 + b[p]! - 0x30;
      p++;
      if (++digits > 6) throw new StreamFormatError('PPM: number too large');
    }
    if (p >= b.length) return null;
    if (digits === 0) throw new StreamFormatError('PPM: bad header');
    fields.push(v);
  }
  if (p >= b.length) return null;
  p++; // the single whitespace before the pixels
  const [w, h, max] = fields as [number, number, number];
  if (max < 1 || max > 255) throw new StreamFormatError(`PPM: maxval ${max} (want 1..255)`);
  if (w < 1 || h < 1 || w * h * 3 > MAX_IMAGE_BYTES)
    throw new StreamFormatError(`PPM: bad size ${w}x${h}`);
  return [w, h, p];
}

/**
 * The first image of `b`: [image, bytes it took], or null when more bytes are needed.
 * Throws StreamFormatError on bytes that are none of the accepted kinds.
 */
export function nextImage(b: Uint8Array): [StreamImage, number] | null {
  if (b.length < 4) return null;
  if (b[0] === 0xff && b[1] === 0xd8) {
    const end = jpegEnd(b);
    if (end < 0) {
      if (b.length > MAX_IMAGE_BYTES) throw new StreamFormatError('JPEG: larger than 64 MiB');
      return null;
    }
    return [{ bytes: b.subarray(0, end) }, end];
  }
  if (b[0] === PNG_SIG[0]) {
    if (b.length < 8) return null;
    if (!PNG_SIG.every((v, i) => b[i] === v)) throw new StreamFormatError('bad PNG signature');
    const end = pngEnd(b);
    return end < 0 ? null : [{ bytes: b.subarray(0, end) }, end];
  }
  if (b[0] === 0x50 && b[1] === 0x36) {
    const hdr = ppmHeader(b);
    if (!hdr) return null;
    const [width, height, off] = hdr;
    const end = off + width * height * 3;
    if (b.length < end) return null;
    return [{ rgb: { data: b.slice(off, end), width, height } }, end];
  }
  if (b[0]! <= 0x04) {
    const len = new DataView(b.buffer, b.byteOffset, 4).getUint32(0);
    if (len === 0 || len > MAX_IMAGE_BYTES)
      throw new StreamFormatError(`length prefix ${len} out of range 1..${MAX_IMAGE_BYTES}`);
    if (b.length < 4 + len) return null;
    return [{ bytes: b.subarray(4, 4 + len) }, 4 + len];
  }
  throw new StreamFormatError(
    `not a JPEG, PNG, PPM (P6) or 4-byte length prefix (first byte 0x${b[0]!.toString(16)})`,
  );
}

/** Images from a byte stream, in order; throws on malformed bytes or a cut last image. */
export async function* splitImages(
  chunks: AsyncIterable<Uint8Array | string>,
): AsyncGenerator<StreamImage> {
  let buf: Uint8Array = new Uint8Array(0);
  for await (const c of chunks) {
    const chunk = typeof c === 'string' ? Buffer.from(c, 'binary') : c;
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    for (;;) {
      const r = nextImage(buf);
      if (!r) break;
      // encoded bytes are copied out so the stream's buffer is not kept alive by one image
      const [img, used] = r;
      yield img.bytes ? { bytes: Uint8Array.prototype.slice.call(img.bytes) } : img;
      buf = buf.subarray(used);
    }
  }
  if (buf.length > 0) throw new StreamFormatError(`stream ended inside an image (${buf.length} B)`);
}
