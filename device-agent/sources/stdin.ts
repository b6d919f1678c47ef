/**
 * Images from a byte stream, by default the agent's stdin (`--source -`): concatenated
 * JPEG, PNG or binary PPM files, or length-prefixed images (4-byte big-endian length,
 * then the bytes), mixed freely (sources/split.ts). Read on demand: a producer faster
 * than the agent waits on the pipe, so every image is encoded, in order. E.g.
 *   cat photos/*.jpg | splitfleet agent --device d1 --source -
 *   ffmpeg -i cam.mp4 -f image2pipe -c:v mjpeg - | splitfleet agent --device d1 --source -
 */
import type { Readable } from 'node:stream';
import type { Sample } from '../../core/data/cifar.js';
import { splitImages } from './split.js';

export function isStdinSource(spec: string): boolean {
  return spec === '-' || spec === 'stdin';
}

export async function* streamSource(
  input: Readable = process.stdin,
  tag = 'stdin',
): AsyncGenerator<Sample> {
  let n = 0;
  for await (const img of splitImages(input as AsyncIterable<Uint8Array>)) {
    const name = `${tag}#${n++}`;
    yield img.rgb
      ? { name, label: undefined, rgb: img.rgb }
      : { name, label: undefined, bytes: img.bytes };
  }
}
