/**
 * The edge half of the data path, for every frame a device sends:
 *   frame check (on receipt) -> the plan's edge half (core/split/plan.ts) batched:
 *     feature frames   codec decode -> tail
 *     image frames     image decode -> preprocess -> head -> tail (input offload)
 *   -> result.
 * Every failure becomes a DecodeFailure with an error code the device can act on.
 */
import {
  CodecError,
  readsVersion,
  versionsRead,
  type FeatureCodec,
} from '../../core/codec/types.js';
import type { Engine, Session } from '../../core/engine/engine.js';
import type { Bundle } from '../../core/model/load.js';
import type { Manifest } from '../../core/model/manifest.js';
import { decodePayload, shapeProblem, splitPlan, type SplitPlan } from '../../core/split/plan.js';
import { decodeFrame, FrameError, MAX_PAYLOAD_BYTES, type Frame } from '../../core/wire/frame.js';
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
 * codec and point that model takes (its split plan), and the shape. No networks are
 * loaded: the edge's main thread checks frames on receipt, decoder processes (pool.ts)
 * run them.
 */
export class FrameChecker {
  protected readonly models = new Map<string, LoadedModel>();
  /** Plans by model, codec and point: a handful per model, built on first use. */
  private readonly plans = new Map<string, SplitPlan>();

  constructor(
    bundles: readonly Bundle[],
    /** The largest payload a frame may carry here. */
    readonly maxPayloadBytes: number = MAX_PAYLOAD_BYTES,
  ) {
    for (const b of bundles) {
      const m = b.manifest;
      this.models.set(modelKey(m.modelId, m.version), { manifest: m, codec: b.codec });
    }
  }

  /** The split plan of a frame of a served model: its codec, point and edge half. */
  protected plan(model: LoadedModel, frame: Frame): SplitPlan {
    const key = `${modelKey(frame.modelId, frame.modelVersion)}/${frame.codecId}/${frame.point}`;
    let plan = this.plans.get(key);
    if (!plan) {
      try {
        plan = splitPlan(model, frame.codecId, frame.point);
      } catch (e) {
        throw new DecodeFailure('unknown-codec', (e as Error).message, frame.frameId);
      }
      this.plans.set(key, plan);
    }
    const codec = plan.codec;
    if (!readsVersion(codec, frame.codecVersion)) {
      throw new DecodeFailure(
        'unknown-codec',
        `codec ${codec.name} version ${frame.codecVersion} is not supported (reads ${versionsRead(codec).join(', ')})`,
        frame.frameId,
      );
    }
    return plan;
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

  /** Parse and check a v1 frame without running inference (cheap, done on receipt). */
  parse(bytes: Uint8Array, now = Date.now()): Frame {
    let frame: Frame;
    try {
      frame = decodeFrame(bytes, now, this.maxPayloadBytes);
    } catch (e) {
      const fe = e as FrameError;
      throw new DecodeFailure('malformed-frame', fe.message, fe.frameId ?? null);
    }
    return this.check(frame);
  }

  /** Check a frame's model, codec, point and shape (a v2 frame, rebuilt from its context). */
  check(frame: Frame): Frame {
    const why = shapeProblem(this.plan(this.model(frame), frame), frame.shape);
    if (why) throw new DecodeFailure('malformed-frame', why, frame.frameId);
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

/** One decoder: a FrameChecker with its own sessions of every served model's edge
 * networks (a backbone's head is loaded with the first image frame). */
export class FrameDecoder extends FrameChecker {
  /** Sessions being loaded on first use, by model and file role. */
  private readonly loading = new Map<string, Promise<Session>>();

  private constructor(
    private readonly bundles: ReadonlyMap<string, Bundle>,
    /** One session per model and file role. */
    private readonly sessions: Map<string, Session>,
    private readonly engine: Engine,
    private readonly threads: number,
    private readonly edgeId: string,
    private readonly topk: number,
  ) {
    super([...bundles.values()]);
  }

  static async create(
    bundles: readonly Bundle[],
    engine: Engine,
    opts: { threads: number; edgeId: string; topk?: number },
  ): Promise<FrameDecoder> {
    const sessions = new Map<string, Session>();
    const byKey = new Map<string, Bundle>();
    try {
      for (const b of bundles) {
        const m = b.manifest;
        byKey.set(modelKey(m.modelId, m.version), b);
        const roles = m.kind === 'codec' ? new Set(m.codec.points.map((p) => p.tail)) : ['tail'];
        for (const role of roles) {
          sessions.set(
            `${modelKey(m.modelId, m.version)}/${role}`,
            await engine.load(b.file(role), { threads: opts.threads }),
          );
        }
      }
    } catch (e) {
      for (const t of sessions.values()) await t.close();
      throw e;
    }
    return new FrameDecoder(byKey, sessions, engine, opts.threads, opts.edgeId, opts.topk ?? 3);
  }

  /** The session of network `role` of a served model, loaded on first use. */
  private async session(model: string, role: string): Promise<Session> {
    const key = `${model}/${role}`;
    const have = this.sessions.get(key);
    if (have) return have;
    let p = this.loading.get(key);
    if (!p) {
      const b = this.bundles.get(model)!;
      p = this.engine.load(b.file(role), { threads: this.threads }).then(
        (s) => {
          this.sessions.set(key, s);
          return s;
        },
        (e: unknown) => {
          this.loading.delete(key); // a failed load is tried again with the next frame
          throw e;
        },
      );
      this.loading.set(key, p);
    }
    return p;
  }

  /** Decode one frame that passed parse() and run its edge networks. */
  async run(deviceId: string, frame: Frame, receivedAt: number): Promise<ResultMessage> {
    const [r] = await this.runBatch([{ deviceId, frame, receivedAt }]);
    if (r instanceof DecodeFailure) throw r;
    return r!;
  }

  /**
   * Decode a batch of frames that passed parse(): each payload is decoded on its own
   * (feature codec, or picture and preprocessing), then the frames of one model and edge
   * half run as one batch [N, ...] through its networks. Every frame gets its result or
   * its DecodeFailure, in order.
   */
  async runBatch(jobs: readonly DecodeJob[]): Promise<(ResultMessage | DecodeFailure)[]> {
    const out: (ResultMessage | DecodeFailure)[] = new Array(jobs.length);
    const groups = new Map<
      string,
      {
        model: string;
        plan: SplitPlan;
        shape: readonly number[];
        idx: number[];
        /** Each frame's codec: frames of several codecs share an edge half. */
        codecs: string[];
        inputs: Float32Array[];
        decodeMs: number[];
      }
    >();
    for (const [i, job] of jobs.entries()) {
      const { frame } = job;
      const t0 = performance.now();
      try {
        const plan = this.plan(this.model(frame), frame);
        let input;
        try {
          input = await decodePayload(plan, frame.payload, frame.shape, frame.codecVersion);
        } catch (e) {
          const code: ErrorCode = e instanceof CodecError ? 'corrupt-payload' : 'inference-failed';
          throw new DecodeFailure(code, (e as Error).message, frame.frameId);
        }
        const model = modelKey(frame.modelId, frame.modelVersion);
        const key = `${model}/${plan.edgeKey}`;
        let g = groups.get(key);
        if (!g) {
          g = { model, plan, shape: input.shape, idx: [], codecs: [], inputs: [], decodeMs: [] };
          groups.set(key, g);
        }
        g.idx.push(i);
        g.codecs.push(plan.codec.name);
        g.inputs.push(input.data);
        g.decodeMs.push(performance.now() - t0);
      } catch (e) {
        out[i] = DecodeFailure.from(e, 'inference-failed', frame.frameId);
      }
    }
    for (const g of groups.values()) {
      const per = numel(g.shape);
      const n = g.idx.length;
      const t1 = performance.now();
      let logits;
      try {
        const data = new Float32Array(n * per);
        g.inputs.forEach((f, k) => data.set(f, k * per));
        logits = { data, shape: [n, ...g.shape] };
        for (const role of g.plan.edgeNetworks) {
          logits = await (await this.session(g.model, role)).run(logits);
        }
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
      const m = g.plan.manifest;
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
          codec: g.codecs[k]!,
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
    await Promise.allSettled(this.loading.values());
    for (const t of this.sessions.values()) await t.close();
  }
}
