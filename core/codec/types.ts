/**
 * The codec contract (CompressAI's compress/decompress split, without the training-side
 * forward): a codec turns what the device sends into bytes and back on the edge. Two
 * kinds share it, told apart by `kind`:
 *
 *   feature  the split tensor (the head's output; a learned codec's integer symbols):
 *            the edge runs the tail on what decode gives back
 *   image    the picture itself (input offload): the edge preprocesses what decode gives
 *            back and runs the whole model, head and tail
 */
import type { RgbImage } from '../image/image.js';
import type { Tensor } from '../tensor.js';

export interface OperatingPoint {
  /** Index carried in the frame (uint8). */
  index: number;
  /** Human label, e.g. "8bit". */
  label: string;
  /** Method name used in benchmark rows, e.g. "split-q8". */
  method: string;
  /** Image codecs: the encoder's quality; undefined means "send the stored file as it
   * is" (jpeg only). */
  quality?: number;
}

export class CodecError extends Error {
  override name = 'CodecError';
}

interface CodecBase {
  /** Pinned numeric id carried in every frame (core/codec/ids.ts). */
  readonly id: number;
  readonly name: string;
  /** Bitstream version: bumped whenever the bytes change meaning; what encode writes. */
  readonly version: number;
  /** Every version decode reads (absent: `version` alone), so frames of older agents
   * still decode. */
  readonly reads?: readonly number[];
  readonly points: readonly OperatingPoint[];
}

/** Every bitstream version a codec decodes. */
export function versionsRead(codec: {
  version: number;
  reads?: readonly number[];
}): readonly number[] {
  return codec.reads ?? [codec.version];
}

/** Whether a codec decodes bitstream version `v`. */
export function readsVersion(codec: { version: number; reads?: readonly number[] }, v: number) {
  return versionsRead(codec).includes(v);
}

export interface FeatureCodec extends CodecBase {
  readonly kind: 'feature';
  /** `version`: one of `reads` (default `version`). */
  encode(t: Tensor, point: number, version?: number): Uint8Array;
  /** Throws CodecError on a payload that does not decode to `shape`, or a version it does
   * not read. */
  decode(payload: Uint8Array, shape: readonly number[], point: number, version?: number): Tensor;
}

export interface ImageCodec extends CodecBase {
  readonly kind: 'image';
  /** `stored`: the image file as the source holds it (jpeg's "stored" point sends it). */
  encode(img: RgbImage, point: number, stored?: Uint8Array): Promise<Uint8Array>;
  /** Throws CodecError on bytes that are not an image of this codec. */
  decode(bytes: Uint8Array, point: number): Promise<RgbImage>;
}

/** Any codec a frame can name. */
export type Codec = FeatureCodec | ImageCodec;

export function checkPoint(codec: Codec, point: number): OperatingPoint {
  const p = codec.points.find((x) => x.index === point);
  if (!p) {
    throw new CodecError(
      `codec ${codec.name} has no operating point ${point} (has ${codec.points.map((x) => x.index).join(', ')})`,
    );
  }
  return p;
}
