/**
 * The edge half of full input offload (`bench latency`'s jpeg / jpeg-scan / webp
 * baselines): the device sends the image itself with an input codec
 * (core/codec/image.ts, framed as any frame: shape [3, H, W]) and the edge runs the
 * whole model on it: frame check -> image decode -> preprocess -> head -> tail -> result.
 *
 * The edge's FrameDecoder takes feature frames only, so this runs beside the edge as a
 * plain MQTT client on its broker, subscribed to one fleet's features (the edge is
 * started with `--fleet` for another): it answers with the same result and error
 * messages on the same topics, and acknowledges a frame only once its answer is queued,
 * as ShareWorker does.
 */
import { connectAsync, type MqttClient } from 'mqtt';
import { imageCodecs, type ImageCodec } from '../core/codec/image.js';
import { onnxEngine } from '../core/engine/onnx.js';
import type { Session } from '../core/engine/engine.js';
import { preprocess } from '../core/image/image.js';
import type { Bundle } from '../core/model/bundle.js';
import { decodeFrame, FrameError } from '../core/wire/frame.js';
import { errorMessage, type ResultMessage } from '../core/wire/messages.js';
import { DEFAULT_BASE, deviceFilter, deviceTopic, parseTopic } from '../core/wire/topics.js';
import { log } from '../core/util/log.js';
import { DecodeFailure, modelKey, resultMessage } from './decode/decoder.js';

export interface ImageOffloadOptions {
  url: string;
  /** The fleet whose devices offload images (the edge serves another). */
  fleet: string;
  /** Backbones to serve (their head and tail make the whole model). */
  bundles: readonly Bundle[];
  workerId?: string;
  threads?: number;
  base?: string;
}

interface Full {
  bundle: Bundle;
  head: Session;
  tail: Session;
}

export class ImageOffloadWorker {
  readonly stats = { frames: 0, results: 0, errors: 0 };
  /** One frame at a time, in arrival order (one decoder). */
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly client: MqttClient,
    private readonly models: Map<string, Full>,
    private readonly opts: ImageOffloadOptions,
  ) {}

  static async start(o: ImageOffloadOptions): Promise<ImageOffloadWorker> {
    const models = new Map<string, Full>();
    for (const b of o.bundles) {
      const m = b.manifest;
      if (m.kind !== 'backbone') throw new Error(`image offload needs backbones, not ${m.name}`);
      const threads = o.threads ?? 1;
      models.set(modelKey(m.modelId, m.version), {
        bundle: b,
        head: await onnxEngine.load(b.file('head'), { threads }),
        tail: await onnxEngine.load(b.file('tail'), { threads }),
      });
    }
    const id = o.workerId ?? `offload-${process.pid}`;
    const client = await connectAsync(o.url, {
      clientId: `sf-${id}`.slice(0, 64),
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
    });
    const w = new ImageOffloadWorker(client, models, { ...o, workerId: id });
    client.handleMessage = (packet, done) => {
      const run = w.chain.then(() => w.onFrame(packet.topic, packet.payload as Buffer));
      w.chain = run.catch(() => undefined);
      run.then(
        () => done(),
        () => done(),
      );
    };
    await client.subscribeAsync(deviceFilter('features', o.fleet, o.base ?? DEFAULT_BASE), {
      qos: 1,
    });
    return w;
  }

  /** Check, decode and classify one image frame. */
  async run(deviceId: string, bytes: Uint8Array, receivedAt: number): Promise<ResultMessage> {
    let frame;
    try {
      frame = decodeFrame(bytes, receivedAt);
    } catch (e) {
      const fe = e as FrameError;
      throw new DecodeFailure('malformed-frame', fe.message, fe.frameId ?? null);
    }
    const full = this.models.get(modelKey(frame.modelId, frame.modelVersion));
    if (!full) {
      throw new DecodeFailure('unknown-model', `model ${frame.modelId} not served`, frame.frameId);
    }
    const codec: ImageCodec | undefined = imageCodecs.find((c) => c.id === frame.codecId);
    if (!codec || codec.version !== frame.codecVersion) {
      throw new DecodeFailure(
        'unknown-codec',
        `codec ${frame.codecId} v${frame.codecVersion} is not an input codec served here`,
        frame.frameId,
      );
    }
    const m = full.bundle.manifest;
    const t0 = performance.now();
    let x;
    try {
      const img = await codec.decode(frame.payload, frame.point);
      x = preprocess(img, m.preprocessing);
    } catch (e) {
      throw new DecodeFailure('corrupt-payload', (e as Error).message, frame.frameId);
    }
    const t1 = performance.now();
    let logits;
    try {
      logits = await full.tail.run(await full.head.run(x));
    } catch (e) {
      throw new DecodeFailure('inference-failed', (e as Error).message, frame.frameId);
    }
    const t2 = performance.now();
    return resultMessage({
      deviceId,
      frame,
      receivedAt,
      manifest: m,
      codec: codec.name,
      logits: logits.data,
      topk: 3,
      decodeMs: t1 - t0,
      tailMs: t2 - t1,
      edgeId: this.opts.workerId!,
    });
  }

  private async onFrame(topic: string, payload: Buffer): Promise<void> {
    const base = this.opts.base ?? DEFAULT_BASE;
    const t = parseTopic(topic, base);
    if (!t || t.kind !== 'device' || t.channel !== 'features') return;
    this.stats.frames++;
    let answerTopic: string;
    let body: unknown;
    try {
      body = await this.run(t.deviceId, payload, Date.now());
      answerTopic = deviceTopic(t.fleet, t.deviceId, 'result', base);
      this.stats.results++;
    } catch (e) {
      const f = DecodeFailure.from(e, 'inference-failed', null);
      body = errorMessage(t.deviceId, f.frameId, f.code, f.message, this.opts.workerId!);
      answerTopic = deviceTopic(t.fleet, t.deviceId, 'error', base);
      this.stats.errors++;
    }
    this.client.publish(answerTopic, JSON.stringify(body), { qos: 1 }, (err) => {
      if (err) log.warn({ worker: this.opts.workerId, err: err.message }, 'answer not sent');
    });
  }

  async stop(): Promise<void> {
    await this.chain;
    await this.client.endAsync();
    for (const f of this.models.values()) {
      await f.head.close();
      await f.tail.close();
    }
  }
}
