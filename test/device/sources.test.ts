/**
 * Frame sources (device-agent/source.ts and sources/*): the stream splitter, a video file
 * and a live synthetic camera through a real ffmpeg, images on an MQTT topic through a
 * real broker, and stdin through the real CLI; each end to end against a real edge
 * (every frame answered). Media is made at test time (ffmpeg's testsrc, sharp).
 */
import test from 'ava';
import { runCli } from '../helpers/cli.js';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { connectAsync } from 'mqtt';
import sharp from 'sharp';
import { Agent } from '../../device-agent/agent.js';
import { frameSource, sourceKind } from '../../device-agent/source.js';
import { ffmpegInput } from '../../device-agent/sources/ffmpeg.js';
import { parseMqttSource } from '../../device-agent/sources/mqtt.js';
import { DropOldestQueue } from '../../device-agent/sources/queue.js';
import { splitImages, StreamFormatError } from '../../device-agent/sources/split.js';
import { streamSource } from '../../device-agent/sources/stdin.js';
import { testEdge } from '../helpers/edge.js';
import { shippedModel } from '../helpers/model.js';

let dir = '';
let video = '';
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sf-sources-'));
  video = join(dir, 'clip.mp4');
  // 12 frames of ffmpeg's test pattern, 80x60 (not the model's 32x32: the pipeline fits it)
  const r = spawnSync(
    'ffmpeg',
    [
      ...['-hide_banner', '-loglevel', 'error', '-f', 'lavfi'],
      ...['-i', 'testsrc2=size=80x60:rate=10', '-frames:v', '12', '-c:v', 'mpeg4', '-y', video],
    ],
    { encoding: 'utf8', timeout: 60_000 },
  );
  if (r.status !== 0) throw new Error(`ffmpeg: ${r.stderr || String(r.error)}`);
});
test.after.always(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function images(): Promise<{ jpeg: Buffer; png: Buffer; webp: Buffer; ppm: Buffer }> {
  const raw = Buffer.alloc(40 * 30 * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 7) & 0xff;
  const img = () => sharp(raw, { raw: { width: 40, height: 30, channels: 3 } });
  return {
    // with EXIF metadata, so the JPEG walk has an APP1 segment to skip
    jpeg: await img()
      .jpeg({ quality: 80 })
      .withExif({ IFD0: { Copyright: 'splitfleet' } })
      .toBuffer(),
    png: await img().png().toBuffer(),
    webp: await img().webp().toBuffer(),
    ppm: Buffer.concat([Buffer.from('P6\n# a comment\n40 30\n255\n'), raw]),
  };
}

test('source specs pick their kind', (t) => {
  t.is(sourceKind('sample'), 'dataset');
  t.is(sourceKind('/data/cifar10.tar.gz'), 'dataset');
  t.is(sourceKind('-'), 'stdin');
  t.is(sourceKind('v4l2:/dev/video0'), 'ffmpeg');
  t.is(sourceKind('rtsp://cam/stream'), 'ffmpeg');
  t.is(sourceKind('/videos/yard.mp4'), 'ffmpeg');
  t.is(sourceKind('mqtt://127.0.0.1:1883/cams/+/jpeg'), 'mqtt');
  t.deepEqual(ffmpegInput('v4l2:/dev/video0?size=640x480&rate=15&format=mjpeg').args, [
    ...['-f', 'v4l2', '-video_size', '640x480', '-framerate', '15'],
    ...['-input_format', 'mjpeg', '-i', '/dev/video0'],
  ]);
  t.true(ffmpegInput('v4l2:/dev/video0').live);
  t.false(ffmpegInput('clip.mp4').live);
  t.throws(() => ffmpegInput('v4l2:/dev/video0?zoom=2'), { message: /unknown option/ });
  t.deepEqual(parseMqttSource('mqtt://u:p@host:1884/cams/%23'), {
    url: 'mqtt://u:p@host:1884',
    topic: 'cams/#',
  });
  t.throws(() => parseMqttSource('mqtt://host/cams/a#'), { message: /wildcard/ });
});

test('the splitter cuts JPEG, PNG, PPM and length-prefixed images in any chunking', async (t) => {
  const { jpeg, png, webp, ppm } = await images();
  const prefixed = Buffer.concat([Buffer.alloc(4), webp]);
  prefixed.writeUInt32BE(webp.length, 0);
  const stream = Buffer.concat([jpeg, png, ppm, prefixed, jpeg]);
  for (const chunk of [1, 7, 1000, stream.length]) {
    const parts: Buffer[] = [];
    for (let i = 0; i < stream.length; i += chunk) parts.push(stream.subarray(i, i + chunk));
    const got = [];
    for await (const img of splitImages(Readable.from(parts))) got.push(img);
    t.is(got.length, 5, `chunks of ${chunk}`);
    t.deepEqual(Buffer.from(got[0]!.bytes!), jpeg);
    t.deepEqual(Buffer.from(got[1]!.bytes!), png);
    t.deepEqual([got[2]!.rgb?.width, got[2]!.rgb?.height], [40, 30]);
    t.deepEqual(Buffer.from(got[2]!.rgb!.data), ppm.subarray(ppm.length - 40 * 30 * 3));
    t.deepEqual(Buffer.from(got[3]!.bytes!), webp);
    t.deepEqual(Buffer.from(got[4]!.bytes!), jpeg);
  }
  const drain = async (b: Buffer) => {
    for await (const img of splitImages(Readable.from([b]))) void img;
  };
  await t.throwsAsync(drain(jpeg.subarray(0, jpeg.length - 10)), {
    instanceOf: StreamFormatError,
    message: /ended inside an image/,
  });
  await t.throwsAsync(drain(Buffer.from('hello world')), {
    instanceOf: StreamFormatError,
    message: /not a JPEG, PNG, PPM/,
  });
  // stdin source: the same stream, as samples (bytes, or pixels for the PPM)
  const samples = [];
  for await (const s of streamSource(Readable.from([stream]), 'test')) samples.push(s);
  t.deepEqual(
    samples.map((s) => [s.name, s.rgb ? 'rgb' : 'bytes']),
    [
      ['test#0', 'bytes'],
      ['test#1', 'bytes'],
      ['test#2', 'rgb'],
      ['test#3', 'bytes'],
      ['test#4', 'bytes'],
    ],
  );
});

test('the drop-oldest queue keeps the newest frames and counts the rest', async (t) => {
  const q = new DropOldestQueue<number>(2);
  for (let i = 0; i < 10; i++) q.push(i);
  t.is(q.dropped, 8);
  t.is(await q.take(), 8);
  t.is(await q.take(), 9);
  const later = q.take();
  q.push(10);
  t.is(await later, 10);
  q.end(new Error('camera gone'));
  await t.throwsAsync(q.take(), { message: 'camera gone' });
});

test('a video file gives every frame in order, at its size; loop replays it', async (t) => {
  const names: string[] = [];
  for await (const s of frameSource({ source: video })) {
    t.deepEqual([s.rgb?.width, s.rgb?.height], [80, 60]);
    names.push(s.name);
  }
  t.deepEqual(
    names,
    Array.from({ length: 12 }, (_, i) => `${video}#${i}`),
  );
  let n = 0;
  for await (const s of frameSource({ source: video, loop: true, limit: 30 })) {
    t.truthy(s.rgb);
    n++;
  }
  t.is(n, 30);
  await t.throwsAsync(
    async () => {
      for await (const s of frameSource({ source: join(dir, 'missing.mp4') })) void s;
    },
    { message: /ffmpeg failed on .*missing\.mp4/ },
  );
});

test('a live camera slower to read than it produces hands over its newest frame', async (t) => {
  // ffmpeg's synthetic camera at 50 frames/s, taken 5 times a second: the frames in
  // between are dropped, never queued
  const indices: number[] = [];
  for await (const s of frameSource({ source: 'lavfi:testsrc2=size=64x48:rate=50', limit: 5 })) {
    indices.push(Number(s.name.split('#')[1]));
    await new Promise((r) => setTimeout(r, 200));
  }
  t.log(`frame numbers taken: ${indices.join(', ')}`);
  t.is(indices.length, 5);
  for (let i = 1; i < indices.length; i++) t.true(indices[i]! > indices[i - 1]!);
  // 4 waits of 200 ms at 50 frames/s: about 40 frames made, 5 taken
  t.true(indices.at(-1)! - indices[0]! > 8, 'stale frames were dropped');
});

test('agent: a video file and a live camera, every frame answered by the edge', async (t) => {
  const edge = await testEdge();
  try {
    for (const [source, fps, frames] of [
      [video, 0, 12],
      ['lavfi:testsrc2=size=160x120:rate=25', 10, 8],
    ] as const) {
      const a = new Agent({
        url: edge.url,
        fleet: 'src',
        deviceId: `cam-${frames}`,
        bundle: await shippedModel(),
        codec: 'split-q',
        point: 2,
        fps,
        source: { source, limit: frames },
      });
      await a.start();
      const s = await a.run();
      await a.stop();
      t.is(s.sent, frames, source);
      t.is(s.results, frames, source);
      t.is(s.skipped, 0);
      t.is(s.errors, 0);
    }
  } finally {
    await edge.close();
  }
});

test('agent: images published on an MQTT topic are encoded; a bad payload is skipped', async (t) => {
  const edge = await testEdge();
  const { jpeg, png } = await images();
  const big = await sharp({
    create: { width: 640, height: 480, channels: 3, background: { r: 200, g: 30, b: 90 } },
  })
    .jpeg()
    .toBuffer();
  const port = new URL(edge.url).port;
  const camera = await connectAsync(edge.url, { protocolVersion: 4 });
  try {
    const a = new Agent({
      url: edge.url,
      fleet: 'src',
      deviceId: 'mqtt-cam',
      bundle: await shippedModel(),
      codec: 'split-q',
      point: 2,
      fps: 0,
      source: { source: `mqtt://127.0.0.1:${port}/site/cams/+/image`, limit: 4 },
    });
    await a.start();
    const running = a.run();
    // publish until the source has subscribed and taken them: one image per 100 ms
    const payloads = [jpeg, Buffer.from('not an image'), png, big, jpeg];
    let i = 0;
    const timer = setInterval(() => {
      camera.publish(`site/cams/c${i % 3}/image`, payloads[i % payloads.length]!, {
        qos: 0,
      });
      i++;
    }, 100);
    const s = await running;
    clearInterval(timer);
    await a.stop();
    t.is(s.sent + s.skipped, 4);
    t.is(s.results, s.sent);
    t.true(s.sent >= 3, `sent ${s.sent}`);
    t.is(s.errors, 0);
  } finally {
    await camera.endAsync();
    await edge.close();
  }
});

test('CLI: images on stdin (JPEG, PNG, PPM, length-prefixed) are all answered', async (t) => {
  const edge = await testEdge();
  try {
    const { jpeg, png, webp, ppm } = await images();
    const prefixed = Buffer.concat([Buffer.alloc(4), webp]);
    prefixed.writeUInt32BE(webp.length, 0);
    const { code, stdout, stderr } = await runCli(
      [
        'agent',
        '--device',
        'stdin-cam',
        '--url',
        edge.url,
        '--source',
        '-',
        '--fps',
        '0',
        '--json',
      ],
      { stdin: Buffer.concat([jpeg, png, ppm, prefixed, jpeg]) },
    );
    t.is(code, 0, stderr);
    const s = JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    t.is(s.sent, 5);
    t.is(s.results, 5);
    t.is(s.skipped, 0);
  } finally {
    await edge.close();
  }
});
