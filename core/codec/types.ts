/**
 * The codec contract (CompressAI's compress/decompress split, without the training-side
 * forward): a codec turns the split tensor into bytes on the device and back on the edge.
 */
import type { Tensor } from '../tensor.js';

export interface OperatingPoint {
  /** Index carried in the frame (uint8). */
  index: number;
  /** Human label, e.g. "8bit". */
  label: string;
  /** Method name used in benchmark rows, e.g. "split-q8". */
  method: string;
}

export class CodecError extends Error {
  override name = 'CodecError';
}

export interface FeatureCodec {
  /** Pinned numeric id carried in every frame; never derived from registration order. */
  readonly id: number;
  readonly name: string;
  /** Bitstream version: bumped whenever the bytes change meaning. */
  readonly version: number;
  readonly points: readonly OperatingPoint[];
  encode(t: Tensor, point: number): Uint8Array;
  /** Throws CodecError on a payload that does not decode to `shape`. */
  decode(payload: Uint8Array, shape: readonly number[], point: number): Tensor;
}

export function checkPoint(codec: FeatureCodec, point: number): OperatingPoint {
  const p = codec.points.find((x) => x.index === point);
  if (!p) {
    throw new CodecError(
      `codec ${codec.name} has no operating point ${point} (has ${codec.points.map((x) => x.index).join(', ')})`,
    );
  }
  return p;
}
