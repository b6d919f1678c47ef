/**
 * The edge half of the data path for one frame:
 *   frame check -> codec decode -> tail inference -> result.
 * Every failure becomes a DecodeFailure with an error code the device can act on.
 */
import { codecById } from '../core/codec/registry.js';
import { checkPoint, CodecError } from '../core/codec/types.js';
import type { Engine, Session } from '../core/engine/engine.js';
import type { Bundle, Manifest } from '../core/model/bundle.js';
import { decodeFrame, FrameError, type Frame } from '../core/protocol/frame.js';
import {
  RESULT_VERSION,
  softmaxTopK,
  type ErrorCode,
  type ResultMessage,
} from '../core/protocol/messages.js';
import { numel } from '../core/tensor.js';

export class DecodeFailure extends Error {
  override name = 'DecodeFailure';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly frameId: number | null,
  ) {
    super(message);
  }
}

interface LoadedModel {
  manifest: Manifest;
  tail: Session;
}

export const modelKey = (id: number, version: number) => `${id}:${version}`;

/** One decoder: its own tail sessions for every served model. */
export class FrameDecoder {
  private constructor(
    private readonly models: Map<string, LoadedModel>,
    private readonly edgeId: string,
    private readonly topk: number,
  ) {}

  static async create(
    bundles: readonly Bundle[],
    engine: Engine,
    opts: { threads: number; edgeId: string; topk?: number },
  ): Promise<FrameDecoder> {
    const models = new Map<string, LoadedModel>();
    for (const b of bundles) {
      const tail = await engine.load(b.file('tail'), { threads: opts.threads });
      models.set(modelKey(b.manifest.modelId, b.manifest.version), { manifest: b.manifest, tail });
    }
    return new FrameDecoder(models, opts.edgeId, opts.topk ?? 3);
  }

  /** Parse and check a frame without running inference (cheap, done on receipt). */
  parse(bytes: Uint8Array, now = Date.now()): { frame: Frame; model: LoadedModel } {
    let frame: Frame;
    try {
      frame = decodeFrame(bytes, now);
    } catch (e) {
      const fe = e as FrameError;
      throw new DecodeFailure('malformed-frame', fe.message, fe.frameId ?? null);
    }
    const model = this.models.get(modelKey(frame.modelId, frame.modelVersion));
    if (!model) {
      throw new DecodeFailure(
        'unknown-model',
        `model ${frame.modelId} version ${frame.modelVersion} is not served here (serving ${[...this.models.keys()].join(', ')})`,
        frame.frameId,
      );
    }
    let codec;
    try {
      codec = codecById(frame.codecId);
    } catch (e) {
      throw new DecodeFailure('unknown-codec', (e as Error).message, frame.frameId);
    }
    try {
      checkPoint(codec, frame.point);
    } catch (e) {
      throw new DecodeFailure('unknown-codec', (e as Error).message, frame.frameId);
    }
    if (codec.version !== frame.codecVersion) {
      throw new DecodeFailure(
        'unknown-codec',
        `codec ${codec.name} version ${frame.codecVersion} is not supported (have ${codec.version})`,
        frame.frameId,
      );
    }
    const want = model.manifest.split.tensorShape;
    if (frame.shape.length !== want.length || frame.shape.some((d, i) => d !== want[i])) {
      throw new DecodeFailure(
        'malformed-frame',
        `shape [${frame.shape.join(',')}] does not match model split shape [${want.join(',')}]`,
        frame.frameId,
      );
    }
    return { frame, model };
  }

  /** Decode a frame that passed parse() and run the tail. */
  async run(deviceId: string, frame: Frame, receivedAt: number): Promise<ResultMessage> {
    const t0 = performance.now();
    const model = this.models.get(modelKey(frame.modelId, frame.modelVersion));
    if (!model) throw new DecodeFailure('unknown-model', 'model not served', frame.frameId);
    const codec = codecById(frame.codecId);
    let features;
    try {
      features = codec.decode(frame.payload, frame.shape, frame.point);
    } catch (e) {
      const code: ErrorCode = e instanceof CodecError ? 'corrupt-payload' : 'inference-failed';
      throw new DecodeFailure(code, (e as Error).message, frame.frameId);
    }
    const t1 = performance.now();
    let logits;
    try {
      logits = await model.tail.run({ data: features.data, shape: [1, ...frame.shape] });
    } catch (e) {
      throw new DecodeFailure('inference-failed', (e as Error).message, frame.frameId);
    }
    const t2 = performance.now();
    const m = model.manifest;
    if (numel(logits.shape) !== m.labels.length) {
      throw new DecodeFailure(
        'inference-failed',
        `tail produced ${numel(logits.shape)} logits`,
        frame.frameId,
      );
    }
    const top = softmaxTopK(logits.data, m.labels, this.topk);
    const best = top[0]!;
    const ms = (x: number) => Math.round(x * 1000) / 1000;
    return {
      v: RESULT_VERSION,
      deviceId,
      frameId: frame.frameId,
      classIndex: best.classIndex,
      label: best.label,
      score: best.score,
      topk: top,
      modelId: m.modelId,
      modelVersion: m.version,
      model: m.name,
      codec: codec.name,
      point: frame.point,
      payloadBytes: frame.payload.byteLength,
      captureTs: frame.captureTs,
      latency: {
        decodeMs: ms(t1 - t0),
        tailMs: ms(t2 - t1),
        edgeMs: ms(Date.now() - receivedAt),
        queueMs: ms(Math.max(0, Date.now() - receivedAt - (t2 - t0))),
      },
      edgeId: this.edgeId,
    };
  }

  async close(): Promise<void> {
    for (const m of this.models.values()) await m.tail.close();
  }
}
