/**
 * Camera and video frames through ffmpeg. ffmpeg decodes the input and writes each frame
 * as a binary PPM (RGB, its capture size) to its stdout; the frames are cut by
 * sources/split.ts and brought to the model's input by core/image/image.ts, so a camera
 * frame gets exactly the preprocessing the model's manifest defines (ffmpeg never
 * scales).
 *
 * Specs:
 *   v4l2:/dev/video0[?size=640x480&rate=15&format=mjpeg]   a V4L2 camera (Pi, Jetson, USB)
 *   lavfi:testsrc2=size=320x240:rate=30                    ffmpeg's synthetic camera
 *   rtsp://... rtmp://... http(s)://... udp://... srt://... a network stream
 *   video:PATH, or a PATH ending in .mp4 .mkv .avi .mov .webm .m4v .mjpeg .mjpg .h264 .ts
 * Cameras, synthetic cameras and network streams are live: frames come at their own
 * rate, the newest is kept and older ones are dropped (counted) when the agent is
 * slower. A video file is read frame by frame, every frame, at the agent's pace
 * (ffmpeg waits on the pipe), and `loop` replays it.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import type { Sample } from '../../core/data/cifar.js';
import { background, log } from '../../core/util/log.js';
import { DropOldestQueue } from './queue.js';
import { splitImages } from './split.js';

export const FFMPEG = process.env.SPLITFLEET_FFMPEG ?? 'ffmpeg';

const VIDEO_EXT = /\.(mp4|mkv|avi|mov|webm|m4v|mjpe?g|h264|264|hevc|ts|y4m)$/i;
const STREAM_URL = /^(rtsp|rtsps|rtmp|https?|udp|tcp|srt):\/\//i;

/** Whether a source spec is one for ffmpeg. */
export function isFfmpegSource(spec: string): boolean {
  return (
    spec.startsWith('v4l2:') ||
    spec.startsWith('lavfi:') ||
    spec.startsWith('video:') ||
    STREAM_URL.test(spec) ||
    VIDEO_EXT.test(spec)
  );
}

export interface FfmpegInput {
  /** ffmpeg's arguments before the output's. */
  args: string[];
  /** Frames come at the input's own rate (keep the newest) rather than on demand. */
  live: boolean;
}

/** The ffmpeg input arguments for a spec (throws on a bad one). */
export function ffmpegInput(spec: string, loop = false): FfmpegInput {
  if (spec.startsWith('v4l2:')) {
    const [dev, query = ''] = spec.slice(5).split('?', 2) as [string, string?];
    if (!dev) throw new Error('v4l2: needs a device, e.g. v4l2:/dev/video0');
    const q = new URLSearchParams(query);
    const args = ['-f', 'v4l2'];
    for (const k of q.keys()) {
      if (!['size', 'rate', 'format'].includes(k))
        throw new Error(`v4l2: unknown option ${JSON.stringify(k)} (size, rate, format)`);
    }
    const size = q.get('size');
    if (size !== null) {
      if (!/^\d+x\d+$/.test(size)) throw new Error(`v4l2: size ${JSON.stringify(size)}: use WxH`);
      args.push('-video_size', size);
    }
    const rate = q.get('rate');
    if (rate !== null) {
      if (!(Number(rate) > 0)) throw new Error(`v4l2: rate ${JSON.stringify(rate)}: a number > 0`);
      args.push('-framerate', rate);
    }
    const format = q.get('format');
    if (format !== null) {
      if (!/^[a-z0-9_]+$/.test(format))
        throw new Error(`v4l2: bad format ${JSON.stringify(format)}`);
      args.push('-input_format', format);
    }
    return { args: [...args, '-i', dev], live: true };
  }
  if (spec.startsWith('lavfi:')) {
    // -re: a synthetic camera produces at its declared rate, as a real one would
    return { args: ['-re', '-f', 'lavfi', '-i', spec.slice(6)], live: true };
  }
  if (STREAM_URL.test(spec)) return { args: ['-i', spec], live: true };
  const path = spec.startsWith('video:') ? spec.slice(6) : spec;
  if (!path) throw new Error('video: needs a file path');
  return { args: [...(loop ? ['-stream_loop', '-1'] : []), '-i', path], live: false };
}

export interface FfmpegSourceOptions {
  spec: string;
  loop?: boolean;
  /** Live inputs: frames kept for the agent (the newest; default 1). */
  keep?: number;
}

/** Frames of an ffmpeg input, as pixels at their capture size. */
export async function* ffmpegSource(opts: FfmpegSourceOptions): AsyncGenerator<Sample> {
  const input = ffmpegInput(opts.spec, opts.loop ?? false);
  const args = [
    '-nostdin',
    '-hide_banner',
    '-loglevel',
    'error',
    ...input.args,
    '-an',
    '-sn',
    '-dn',
    '-pix_fmt',
    'rgb24',
    '-c:v',
    'ppm',
    '-f',
    'image2pipe',
    'pipe:1',
  ];
  const child: ChildProcessByStdio<null, Readable, Readable> = spawn(FFMPEG, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', (e) => reject(new Error(`cannot run ${FFMPEG}: ${e.message}`)));
    child.on('close', (code) => resolve(code));
  });
  exited.catch(() => undefined);
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const failure = async (): Promise<Error | null> => {
    const code = await exited.catch((e: Error) => e);
    if (code instanceof Error) return code;
    if (code === 0) return null;
    return new Error(
      `ffmpeg failed on ${opts.spec} (exit ${code}): ${stderr.trim().split('\n').at(-1) ?? ''}`,
    );
  };
  let n = 0;
  const name = () => `${opts.spec}#${n++}`;
  try {
    if (!input.live) {
      for await (const img of splitImages(child.stdout)) {
        if (img.rgb) yield { name: name(), label: undefined, rgb: img.rgb };
      }
      const err = await failure();
      if (err) throw err;
      return;
    }
    const q = new DropOldestQueue<Sample>(opts.keep ?? 1);
    // the reader ends the queue with the failure, if any: nothing is left to reject
    const read = async () => {
      try {
        for await (const img of splitImages(child.stdout)) {
          if (img.rgb) q.push({ name: name(), label: undefined, rgb: img.rgb });
        }
        q.end((await failure()) ?? undefined);
      } catch (e) {
        q.end((await failure()) ?? (e as Error));
      }
    };
    background(read(), 'camera reader');
    let lastDropped = 0;
    for (;;) {
      const s = await q.take();
      if (!s) return;
      if (q.dropped >= lastDropped + 100) {
        log.debug(
          { source: opts.spec, received: q.received, dropped: q.dropped },
          'stale frames dropped',
        );
        lastDropped = q.dropped;
      }
      yield s;
    }
  } finally {
    process.off('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 2000);
      await exited.catch(() => undefined);
      clearTimeout(t);
    }
  }
}
