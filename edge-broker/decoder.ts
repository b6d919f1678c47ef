/**
 * The edge half of the data path for one frame:
 *   frame check -> codec decode -> tail inference -> result.
 * Every failure becomes a DecodeFailure with an error code the device can act on.
 */
import { codecById } from '../core/codec/registry.js';
import { checkPoint, CodecError, type FeatureCodec } from '../core/codec/types.js';
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

  /** Any error as a DecodeFailure: itself, or `code` with its text. */
  static from(e: unknown, code: ErrorCode, frameId: number | null): DecodeFailure {
    return e instanceof DecodeFailure ? e : new DecodeFailure(code, String(e), frameId);
  }
}

/** What a frame of one model needs at the edge: its codec, tail network and shape. */
interface Route {
  codec: FeatureCodec;
  tail: Session;
  shape: readonly number[];
}

interface LoadedModel {
  manifest: Manifest;
  /** Learned-codec bundles bring their own codec; backbones use the registry's. */
  codec: FeatureCodec | null;
  /** One session per tail file role. */
  tails: Map<string, Session>;
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
      const m = b.manifest;
      const roles = m.kind === 'codec' ? new Set(m.codec.points.map((p) => p.tail)) : ['tail'];
      const tails = new Map<string, Session>();
      for (const role of roles) {
        tails.set(role, await engine.load(b.file(role), { threads: opts.threads }));
      }
      models.set(modelKey(m.modelId, m.version), { manifest: m, codec: b.codec, tails });
    }
    return new FrameDecoder(models, opts.edgeId, opts.topk ?? 3);
  }

  private route(model: LoadedModel, frame: Frame): Route {
    const fail = (msg: string) => new DecodeFailure('unknown-codec', msg, frame.frameId);
    let codec: FeatureCodec;
    if (model.codec) {
      codec = model.codec;
      if (frame.codecId !== codec.id) {
        throw fail(
          `model ${model.manifest.name} takes codec ${codec.name} (${codec.id}), not ${frame.codecId}`,
        );
      }
    } else {
      try {
        codec = codecById(frame.codecId);
      } catch (e) {
        throw fail((e as Error).message);
      }
    }
    try {
      checkPoint(codec, frame.point);
    } catch (e) {
      throw fail((e as Error).message);
    }
    if (codec.version !== frame.codecVersion) {
      throw fail(
        `codec ${codec.name} version ${frame.codecVersion} is not supported (have ${codec.version})`,
      );
    }
    const m = model.manifest;
    if (m.kind === 'codec') {
      const p = m.codec.points.find((x) => x.index === frame.point)!;
      return { codec, tail: model.tails.get(p.tail)!, shape: p.symbolShape };
    }
    return { codec, tail: model.tails.get('tail')!, shape: m.split.tensorShape };
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
    const want = this.route(model, frame).shape;
    if (frame.shape.length !== want.length || frame.shape.some((d, i) => d !== want[i])) {
      throw new DecodeFailure(
        'malformed-frame',
        `shape [${frame.shape.join(',')}] does not match the model's [${want.join(',')}]`,
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
    const { codec, tail } = this.route(model, frame);
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
      logits = await tail.run({ data: features.data, shape: [1, ...frame.shape] });
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
      ...(frame.tag !== undefined ? { source: frame.tag } : {}),
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
    for (const m of this.models.values()) for (const t of m.tails.values()) await t.close();
  }
}
