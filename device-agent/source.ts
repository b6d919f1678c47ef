/**
 * Frame sources for the agent, one entry (frameSource) for every kind:
 *   sample | DIR | FILE.tar.gz | FILE.tar | the CIFAR-10 binary release  (core/data/cifar.ts)
 *   v4l2:/dev/video0[?size=WxH&rate=N&format=F], lavfi:..., rtsp://..., a video file
 *                                                           (sources/ffmpeg.ts)
 *   mqtt://host[:port]/topic/filter                         (sources/mqtt.ts)
 *   - | stdin                                               (sources/stdin.ts)
 * Every source yields the same Sample (encoded bytes or pixels at any size; the pipeline
 * brings them to the model's input as its manifest defines). Folders, archives, files and
 * stdin are read on demand, at the agent's frame rate; cameras, streams and MQTT are
 * live: they keep only the newest frames and drop the stale ones. A source can loop
 * forever (a camera does) or end.
 */
import { readSamples, type Sample } from '../core/data/cifar.js';
import { SAMPLE_DIR } from '../core/paths.js';
import { ffmpegSource, isFfmpegSource } from './sources/ffmpeg.js';
import { isMqttSource, mqttSource } from './sources/mqtt.js';
import { isStdinSource, streamSource } from './sources/stdin.js';

export interface SourceOptions {
  /** 'sample' (shipped), a folder / .tar.gz / .tar path, or a camera, video, MQTT or
   * stdin spec (above). */
  source: string;
  split?: 'train' | 'test';
  loop?: boolean;
  limit?: number;
  /** Start at this sample (so simulated devices send different images). */
  offset?: number;
  /** Certificates to trust for an mqtts:// image source. */
  ca?: Buffer;
}

export type SourceKind = 'dataset' | 'ffmpeg' | 'mqtt' | 'stdin';

export function sourceKind(source: string): SourceKind {
  if (isStdinSource(source)) return 'stdin';
  if (isMqttSource(source)) return 'mqtt';
  if (isFfmpegSource(source)) return 'ffmpeg';
  return 'dataset';
}

/** The source's own frames, before offset and limit. */
function rawSource(opts: SourceOptions): AsyncGenerator<Sample> {
  switch (sourceKind(opts.source)) {
    case 'stdin':
      return streamSource(process.stdin);
    case 'mqtt':
      return mqttSource({ spec: opts.source, ...(opts.ca ? { ca: opts.ca } : {}) });
    case 'ffmpeg':
      return ffmpegSource({ spec: opts.source, loop: opts.loop ?? false });
    case 'dataset':
      return datasetSource(opts);
  }
}

export function resolveSource(source: string): string {
  return source === 'sample' ? SAMPLE_DIR : source;
}

export async function* frameSource(opts: SourceOptions): AsyncGenerator<Sample> {
  const limit = opts.limit ?? Infinity;
  if (limit <= 0) return;
  let sent = 0;
  let skip = opts.offset ?? 0;
  for await (const s of rawSource(opts)) {
    if (skip > 0) {
      skip--;
      continue;
    }
    sent++;
    yield s;
    if (sent >= limit) return;
  }
}

async function* datasetSource(opts: SourceOptions): AsyncGenerator<Sample> {
  const path = resolveSource(opts.source);
  for (;;) {
    let any = false;
    for await (const s of readSamples(path, { split: opts.split ?? 'test' })) {
      any = true;
      yield s;
    }
    if (!any)
      throw new Error(`source ${path} holds no images of the ${opts.split ?? 'test'} split`);
    if (!opts.loop) return;
  }
}
