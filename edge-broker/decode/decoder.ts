/**
 * The edge half of the data path:
 *   frame check (on receipt) -> codec decode -> tail inference (batched) -> result.
 * Every failure becomes a DecodeFailure with an error code the device can act on.
 */
import { codecById } from '../../core/codec/registry.js';
import { checkPoint, CodecError, type FeatureCodec } from '../../core/codec/types.js';
import type { Engine, Session } from '../../core/engine/engine.js';
import type { Bundle, Manifest } from '../../core/model/bundle.js';
import { decodeFrame, FrameError, type Frame } from '../../core/wire/frame.js';
import {
  boundReason,
  RESULT_VERSION,
  softmaxTopK,
  type ErrorCode,
  type ResultMessage,
} from '../../core/wire/messages.js';
import { numel } from '../../core/tensor.js';

/** A frame's failure, as the device is told it: a code and a reason of at most 1 KiB. */
export class DecodeFailure extends Error {
  override name = 'DecodeFailure';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly frameId: number | null,
  ) {
    super(boundReason(message));
  }

  /** Any error as a DecodeFailure: itself, or `code` with its text. */
  static from(e: unknown, code: ErrorCode, frameId: number | null): DecodeFailure {
    if (e instanceof DecodeFailure) return e;
    // only the start of a long text is kept: never build all of it
    const text =
      e instanceof Error
        ? e.message
          ? `${e.name}: ${boundReason(e.message)}`
          : e.name
        : String(e);
    return new DecodeFailure(code, text, frameId);
  }
}

/** What a frame of one model needs at the edge: its codec, tail role and shape. */
interface Route {
  codec: FeatureCodec;
  tailRole: string;
  shape: readonly number[];
}

interface LoadedModel {
  manifest: Manifest;
  /** Learned-codec bundles bring their own codec; backbones use the registry's. */
  codec: FeatureCodec | null;
}

export const modelKey = (id: number, version: number) => `${id}:${version}`;

/** A frame to decode, with who sent it and when it arrived. */
export interface DecodeJob {
  deviceId: string;
  frame: Frame;
  receivedAt: number;
}

/**
 * The checks a frame passes before it is queued: the frame format, a served model, a
 * codec and point that model takes, and the shape. No networks are loaded: the edge's
 * main thread checks frames on receipt, decoder threads (pool.ts) run them.
 */
export class FrameChecker {
  protected readonly models = new Map<string, LoadedModel>();

  constructor(bundles: readonly Bundle[]) {
    for (const b of bundles) {
      const m = b.manifest;
      this.models.set(modelKey(m.modelId, m.version), { manifest: m, codec: b.codec });
    }
  }

  protected route(model: LoadedModel, frame: Frame): Route {
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
      return { codec, tailRole: p.tail, shape: p.symbolShape };
    }
    return { codec, tailRole: 'tail', shape: m.split.tensorShape };
  }

  protected model(frame: Frame): LoadedModel {
    const model = this.models.get(modelKey(frame.modelId, frame.modelVersion));
    if (!model) {
      throw new DecodeFailure(
        'unknown-model',
        `model ${frame.modelId} version ${frame.modelVersion} is not served here (serving ${[...this.models.keys()].join(', ')})`,
        frame.frameId,
      );
    }
    return model;
  }

  /** Parse and check a frame without running inference (cheap, done on receipt). */
  parse(bytes: Uint8Array, now = Date.now()): Frame {
    let frame: Frame;
    try {
      frame = decodeFrame(bytes, now);
    } catch (e) {
      const fe = e as FrameError;
      throw new DecodeFailure('malformed-frame', fe.message, fe.frameId ?? null);
    }
    const want = this.route(this.model(frame), frame).shape;
    if (frame.shape.length !== want.length || frame.shape.some((d, i) => d !== want[i])) {
      throw new DecodeFailure(
        'malformed-frame',
        `shape [${frame.shape.join(',')}] does not match the model's [${want.join(',')}]`,
        frame.frameId,
      );
    }
    return frame;
  }
}

const ms = (x: number) => Math.round(x * 1000) / 1000;

/** The result message of one decoded frame: top-k of its logits, and the edge timings
 * (`edgeMs` from its receipt to now; `queueMs` what is left after decode and tail). */
export function resultMessage(o: {
  deviceId: string;
  frame: Frame;
  receivedAt: number;
  manifest: Manifest;
  codec: string;
  logits: Float32Array;
  topk: number;
  decodeMs: number;
  tailMs: number;
  batch?: number;
  edgeId: string;
}): ResultMessage {
  const { frame, manifest: m } = o;
  const top = softmaxTopK(o.logits, m.labels, o.topk);
  const best = top[0]!;
  const edgeMs = Date.now() - o.receivedAt;
  return {
    v: RESULT_VERSION,
    deviceId: o.deviceId,
    frameId: frame.frameId,
    classIndex: best.classIndex,
    label: best.label,
    score: best.score,
    topk: top,
    modelId: m.modelId,
    modelVersion: m.version,
    model: m.name,
    codec: o.codec,
    point: frame.point,
    payloadBytes: frame.payload.byteLength,
    captureTs: frame.captureTs,
    ...(frame.tag !== undefined ? { source: frame.tag } : {}),
    latency: {
      decodeMs: ms(o.decodeMs),
      tailMs: ms(o.tailMs),
      edgeMs: ms(edgeMs),
      queueMs: ms(Math.max(0, edgeMs - o.decodeMs - o.tailMs)),
      ...(o.batch !== undefined ? { batch: o.batch } : {}),
    },
    edgeId: o.edgeId,
  };
}

/** One decoder: a FrameChecker with its own tail sessions for every served model. */
export class FrameDecoder extends FrameChecker {
  private constructor(
    bundles: readonly Bundle[],
    /** One session per model and tail file role. */
    private readonly tails: Map<string, Session>,
    private readonly edgeId: string,
    private readonly topk: number,
  ) {
    super(bundles);
  }

  static async create(
    bundles: readonly Bundle[],
    engine: Engine,
    opts: { threads: number; edgeId: string; topk?: number },
  ): Promise<FrameDecoder> {
    const tails = new Map<string, Session>();
    try {
      for (const b of bundles) {
        const m = b.manifest;
        const roles = m.kind === 'codec' ? new Set(m.codec.points.map((p) => p.tail)) : ['tail'];
        for (const role of roles) {
          tails.set(
            `${modelKey(m.modelId, m.version)}/${role}`,
            await engine.load(b.file(role), { threads: opts.threads }),
          );
        }
      }
    } catch (e) {
      for (const t of tails.values()) await t.close();
      throw e;
    }
    return new FrameDecoder(bundles, tails, opts.edgeId, opts.topk ?? 3);
  }

  /** Decode one frame that passed parse() and run the tail. */
  async run(deviceId: string, frame: Frame, receivedAt: number): Promise<ResultMessage> {
    const [r] = await this.runBatch([{ deviceId, frame, receivedAt }]);
    if (r instanceof DecodeFailure) throw r;
    return r!;
  }

  /**
   * Decode a batch of frames that passed parse(): each payload is entropy-decoded on its
   * own, then the frames of one model and tail run as one batch [N, ...] through it.
   * Every frame gets its result or its DecodeFailure, in order.
   */
  async runBatch(jobs: readonly DecodeJob[]): Promise<(ResultMessage | DecodeFailure)[]> {
    const out: (ResultMessage | DecodeFailure)[] = new Array(jobs.length);
    const groups = new Map<
      string,
      {
        model: LoadedModel;
        codec: FeatureCodec;
        idx: number[];
        feats: Float32Array[];
        decodeMs: number[];
      }
    >();
    for (const [i, job] of jobs.entries()) {
      const { frame } = job;
      const t0 = performance.now();
      try {
        const model = this.model(frame);
        const { codec, tailRole } = this.route(model, frame);
        let features;
        try {
          features = codec.decode(frame.payload, frame.shape, frame.point);
        } catch (e) {
          const code: ErrorCode = e instanceof CodecError ? 'corrupt-payload' : 'inference-failed';
          throw new DecodeFailure(code, (e as Error).message, frame.frameId);
        }
        const key = `${modelKey(frame.modelId, frame.modelVersion)}/${tailRole}`;
        let g = groups.get(key);
        if (!g) groups.set(key, (g = { model, codec, idx: [], feats: [], decodeMs: [] }));
        g.idx.push(i);
        g.feats.push(features.data);
        g.decodeMs.push(performance.now() - t0);
      } catch (e) {
        out[i] = DecodeFailure.from(e, 'inference-failed', frame.frameId);
      }
    }
    for (const [key, g] of groups) {
      const first = jobs[g.idx[0]!]!.frame;
      const per = numel(first.shape);
      const n = g.idx.length;
      const t1 = performance.now();
      let logits;
      try {
        const data = new Float32Array(n * per);
        g.feats.forEach((f, k) => data.set(f, k * per));
        logits = await this.tails.get(key)!.run({ data, shape: [n, ...first.shape] });
      } catch (e) {
        for (const i of g.idx) {
          out[i] = new DecodeFailure(
            'inference-failed',
            (e as Error).message,
            jobs[i]!.frame.frameId,
          );
        }
        continue;
      }
      const tailMs = performance.now() - t1;
      const m = g.model.manifest;
      const classes = m.labels.length;
      if (numel(logits.shape) !== n * classes) {
        for (const i of g.idx) {
          const msg = `tail produced ${numel(logits.shape) / n} logits per frame`;
          out[i] = new DecodeFailure('inference-failed', msg, jobs[i]!.frame.frameId);
        }
        continue;
      }
      g.idx.forEach((i, k) => {
        const { deviceId, frame, receivedAt } = jobs[i]!;
        out[i] = resultMessage({
          deviceId,
          frame,
          receivedAt,
          manifest: m,
          codec: g.codec.name,
          logits: logits.data.subarray(k * classes, (k + 1) * classes),
          topk: this.topk,
          decodeMs: g.decodeMs[k]!,
          tailMs,
          batch: n,
          edgeId: this.edgeId,
        });
      });
    }
    return out;
  }

  async close(): Promise<void> {
    for (const t of this.tails.values()) await t.close();
  }
}
