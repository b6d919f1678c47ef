/**
 * Frame sources for the agent: an image folder, a dataset archive, or the shipped
 * sample. A source can loop forever (a camera would) or end.
 */
import { readSamples, type Sample } from '../core/data/cifar.js';
import { SAMPLE_DIR } from '../core/paths.js';

export interface SourceOptions {
  /** 'sample' (shipped), or a folder / .tar.gz / .tar path. */
  source: string;
  split?: 'train' | 'test';
  loop?: boolean;
  limit?: number;
  /** Start at this sample (so simulated devices send different images). */
  offset?: number;
}

export function resolveSource(source: string): string {
  return source === 'sample' ? SAMPLE_DIR : source;
}

export async function* frameSource(opts: SourceOptions): AsyncGenerator<Sample> {
  const path = resolveSource(opts.source);
  const limit = opts.limit ?? Infinity;
  let sent = 0;
  let skip = opts.offset ?? 0;
  for (;;) {
    let any = false;
    for await (const s of readSamples(path, { split: opts.split ?? 'test' })) {
      any = true;
      if (skip > 0) {
        skip--;
        continue;
      }
      if (sent >= limit) return;
      sent++;
      yield s;
    }
    if (!any)
      throw new Error(`source ${path} holds no images of the ${opts.split ?? 'test'} split`);
    if (!opts.loop) return;
  }
}
