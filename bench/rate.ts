/**
 * `splitfleet bench rate`: rate vs accuracy on the test split for the unsplit model,
 * every feature codec at every operating point, and full offload of the input image
 * with the strongest input codecs (../shared/BENCHMARKS.md).
 *
 * Every byte count comes from the real encoders: payload, the framed message (v1
 * frame header included) and the MQTT PUBLISH packet (fixed header, topic, packet id).
 */
import cliProgress from 'cli-progress';
import Table from 'cli-table3';
import { imageCodecs } from '../core/codec/image.js';
import { listCodecs } from '../core/codec/registry.js';
import { readsVersion } from '../core/codec/types.js';
import { readSamples, type Sample } from '../core/data/cifar.js';
import { onnxEngine } from '../core/engine/onnx.js';
import { decodeImage, preprocess, type RgbImage } from '../core/image/image.js';
import type { Session } from '../core/engine/engine.js';
import type { Bundle } from '../core/model/load.js';
import {
  decodePayload,
  encodePayload,
  planFrame,
  splitPlan,
  type SplitPlan,
} from '../core/split/plan.js';
import { decodeFrame } from '../core/wire/frame.js';
import { v2FrameBytes } from '../core/wire/frame-v2.js';
import { deviceTopic } from '../core/wire/topics.js';
import { numel, sliceBatch, stack, type Tensor } from '../core/tensor.js';
import { percentile, round } from '../core/util/stats.js';

export interface RateRow {
  method: string;
  point: string;
  payloadBytes: number;
  bytesPerSample: number;
  wireBytes: number;
  ratioVsSplitTensor: number;
  /** The same payload in a wire v2 frame (6-byte header, docs/PROTOCOL.md) of a steady
   * stream, and its PUBLISH on the device's `f` topic (absent in older reports). */
  framedV2Bytes?: number;
  wireV2Bytes?: number;
  ratioV2VsSplitTensor?: number;
  accuracy: number;
  drop: number;
  /** Network FLOPs (2 x multiply-accumulates) on the device per sample; image codecs' own arithmetic is not counted. */
  encoderFlops: number;
  /** Device side per sample (median), one thread, batch 1: network + encoder + framing. */
  encoderMsPerSample: number;
  /** Edge side per sample (median), one thread, batch 1: frame check + decoder + network. */
  decoderMsPerSample: number;
  /** Learned codecs: the training-time rate estimate (ideal code length at export, PyTorch), for comparison only. */
  estimatedPayloadBytes?: number;
  /** Codecs that write a newer bitstream version than 1 and read 1 too (rANS codecs): the
   * same symbols' mean payload in version 1 (rANS stream 1), for comparison. */
  payloadVersion1Bytes?: number;
}

export interface RateReport {
  dataset: string;
  samples: number;
  timingSamples: number;
  limited: boolean;
  model: string;
  splitPoint: string;
  splitShape: number[];
  splitTensorBytes: number;
  unsplitAccuracy: number;
  rows: RateRow[];
}

/** Size of an MQTT 3.1.1 PUBLISH packet at QoS 1 carrying `payload` bytes on `topic`. */
export function mqttPublishBytes(topic: string, payload: number): number {
  const remaining = 2 + Buffer.byteLength(topic) + 2 + payload;
  let lenBytes = 1;
  for (let r = remaining; r >= 128; r = Math.floor(r / 128)) lenBytes++;
  return 1 + lenBytes + remaining;
}

interface Acc {
  method: string;
  point: string;
  correct: number;
  payload: number;
  framed: number;
  wire: number;
  framedV2: number;
  wireV2: number;
  payloadV1: number;
  flops: number;
  encMs: number;
  decMs: number;
  estimate?: number;
}

function argmax(t: Tensor, i = 0): number {
  const row = sliceBatch(t, i).data;
  let best = 0;
  for (let j = 1; j < row.length; j++) if (row[j]! > row[best]!) best = j;
  return best;
}

/**
 * One row of the benchmark: how a sample goes device -> bytes -> edge -> logits. The
 * accuracy pass runs it batched; the timing pass runs it one sample at a time.
 */
interface Path {
  method: string;
  point: string;
  /** The codec bundle (name@version) of a learned codec's path. */
  bundle?: string;
  flops: number;
  estimate?: number;
  /** Device: pixels (+ stored file) -> frame bytes. */
  device(
    px: Tensor,
    img: RgbImage,
    stored: Uint8Array | undefined,
    id: number,
  ): Promise<Uint8Array>;
  /** Edge: frame bytes -> network input (one sample). */
  edge(frame: Uint8Array): Promise<Tensor>;
  /** The payload's size in codec version 1, where the codec writes a newer one and reads 1. */
  version1Bytes?: ((features: Tensor) => number) | null;
  /** Edge network on a batch of `edge()` outputs. */
  tail: Session;
  /** Device network shared by paths (run once per batch in the accuracy pass). */
  head: Session | null;
  skip?: (stored: boolean) => boolean;
}

export async function benchRate(opts: {
  data: string;
  /** The backbone whose split tensor the baselines code. */
  bundle: Bundle;
  /** Learned-codec bundles (kind "codec") to put in the same table. */
  codecBundles?: readonly Bundle[];
  limit?: number;
  batch?: number;
  threads?: number;
  /** Samples timed one at a time with one thread (0: no timing). */
  timingSamples?: number;
  /** Only these methods (the unsplit model always runs). */
  methods?: string[];
  progress?: boolean;
}): Promise<RateReport> {
  const m = opts.bundle.manifest;
  if (m.kind !== 'backbone') throw new Error(`bench rate --model needs a backbone, not ${m.name}`);
  const topic = deviceTopic('default', 'device-0001', 'features');
  const topicV2 = deviceTopic('default', 'device-0001', 'f');
  /** Build every path with sessions of `threads` threads (accuracy) or 1 (timing). */
  const buildPaths = async (threads: number) => {
    const sessions: Session[] = [];
    const byRole = new Map<string, Promise<Session>>();
    /** One session per bundle and network, shared by the paths that run it. */
    const session = (b: Bundle, role: string) => {
      const key = `${b.dir}/${role}`;
      let s = byRole.get(key);
      if (!s) {
        s = onnxEngine.load(b.file(role), { threads }).then((x) => {
          sessions.push(x);
          return x;
        });
        byRole.set(key, s);
      }
      return s;
    };
    /** The networks of an edge half, run one after the other as one session. */
    const networks = async (b: Bundle, roles: readonly string[]): Promise<Session> => {
      const chain = await Promise.all(roles.map((r) => session(b, r)));
      if (chain.length === 1) return chain[0]!;
      return {
        inputName: chain[0]!.inputName,
        outputName: chain[chain.length - 1]!.outputName,
        run: async (x: Tensor) => {
          for (const s of chain) x = await s.run(x);
          return x;
        },
        close: async () => {},
      };
    };
    /** The unsplit model: the same head and tail with nothing in between. */
    const full = await networks(opts.bundle, ['head', 'tail']);
    const paths: Path[] = [];
    /** Every method this run knows, and whether --methods keeps it (the unsplit model
     * always runs: every drop is measured against it). */
    const all = new Set<string>();
    const wanted = (method: string) =>
      method === 'unsplit' || !opts.methods || opts.methods.includes(method);
    paths.push({
      method: 'unsplit',
      point: 'local',
      flops: 2 * (m.split.headMacs + m.split.tailMacs),
      head: null,
      tail: full,
      device: async (px) => {
        // everything on the device: the "frame" is the class index
        const logits = await full.run(px);
        return Uint8Array.of(argmax(logits));
      },
      edge: async () => ({ data: new Float32Array(0), shape: [0] }),
    });
    /** The benchmark row of a split plan: its device half and its edge half. */
    const planPath = async (
      b: Bundle,
      plan: SplitPlan,
      row: Pick<Path, 'flops' | 'estimate' | 'skip' | 'bundle'>,
    ): Promise<Path> => ({
      method: plan.point.method,
      point: plan.point.label,
      ...row,
      head: plan.deviceNetwork === null ? null : await session(b, plan.deviceNetwork),
      tail: await networks(b, plan.edgeNetworks),
      device: async (out, img, stored, id) => {
        const { payload, shape } = await encodePayload(
          plan,
          plan.kind === 'image' ? { image: img, stored } : { features: out },
        );
        return planFrame(plan, { frameId: id, payload, shape });
      },
      edge: async (bytes) => {
        const f = decodeFrame(bytes);
        return decodePayload(plan, f.payload, f.shape, f.codecVersion);
      },
      version1Bytes:
        plan.kind === 'feature' && plan.codec.version !== 1 && readsVersion(plan.codec, 1)
          ? (t) => plan.codec.encode(t, plan.point.index, 1).byteLength
          : null,
    });
    for (const c of [...listCodecs(), ...imageCodecs]) {
      for (const p of c.points) {
        const plan = splitPlan(opts.bundle, c, p.index);
        paths.push(
          await planPath(opts.bundle, plan, {
            flops: plan.kind === 'image' ? 0 : 2 * m.split.headMacs,
            // 'jpeg as stored' needs the stored JPEG files (not in the binary release).
            skip: (stored) => c.name === 'jpeg' && p.quality === undefined && !stored,
          }),
        );
      }
    }
    for (const b of opts.codecBundles ?? []) {
      const cm = b.manifest;
      if (cm.kind !== 'codec' || !b.codec) continue;
      for (const p of cm.codec.points) {
        all.add(p.method);
        if (!wanted(p.method)) continue; // no sessions for methods left out
        paths.push(
          await planPath(b, splitPlan(b, b.codec, p.index), {
            flops: 2 * p.deviceMacs,
            estimate: p.bitsPerImage / 8,
            bundle: `${cm.name}@${cm.version}`,
          }),
        );
      }
    }
    for (const p of paths) all.add(p.method);
    const unknown = (opts.methods ?? []).filter((name) => !all.has(name));
    if (unknown.length > 0) {
      await Promise.all(sessions.map((s) => s.close()));
      throw new Error(
        `--methods: no method ${unknown.join(', ')} here (known: ${[...all].join(', ')})`,
      );
    }
    return {
      paths: paths.filter((p) => wanted(p.method)),
      close: () => Promise.all(sessions.map((s) => s.close())),
    };
  };

  const accs = new Map<Path['method'] | string, Acc>();
  const acc = (p: Path) => {
    // two codec bundles may share a method and a point label: each keeps its own row
    const k = `${p.method}/${p.point}/${p.bundle ?? ''}`;
    let a = accs.get(k);
    if (!a) {
      const shared =
        p.bundle !== undefined &&
        paths.some((o) => o !== p && o.method === p.method && o.point === p.point);
      a = {
        method: p.method,
        point: shared ? `${p.point} (${p.bundle})` : p.point,
        correct: 0,
        payload: 0,
        framed: 0,
        wire: 0,
        framedV2: 0,
        wireV2: 0,
        payloadV1: 0,
        flops: p.flops,
        encMs: 0,
        decMs: 0,
      };
      accs.set(k, a);
    }
    return a;
  };

  let total = 0;
  const bar =
    opts.progress !== false
      ? new cliProgress.SingleBar(
          {
            format: 'bench rate |{bar}| {value}/{total} samples | {eta_formatted} left',
            stream: process.stderr,
          },
          cliProgress.Presets.shades_classic,
        )
      : null;
  bar?.start(opts.limit ?? 10_000, 0);

  const { paths, close } = await buildPaths(opts.threads ?? 2);
  const batchSize = opts.batch ?? 200;
  const timingSamples = opts.timingSamples ?? 100;
  const timed: { px: Tensor; img: RgbImage; stored: Uint8Array | undefined }[] = [];
  let batch: Sample[] = [];
  // Frame ids as a device makes them (always >= 2^28): a uint32 costs 5 bytes in msgpack,
  // so every row pays the same real header.
  let frameId = 0x1000_0000;

  const flush = async () => {
    if (batch.length === 0) return;
    const samples = batch;
    batch = [];
    const ys = samples.map((s) => s.label ?? -1);
    const imgs: RgbImage[] = await Promise.all(
      samples.map((s) => (s.rgb ? s.rgb : decodeImage(s.bytes!))),
    );
    const pxs = imgs.map((p) => {
      const t = preprocess(p, m.preprocessing);
      return { data: t.data, shape: t.shape.slice(1) };
    });
    for (let i = 0; i < samples.length && timed.length < timingSamples; i++) {
      timed.push({ px: pxs[i]!, img: imgs[i]!, stored: samples[i]!.bytes });
    }
    const x = stack(pxs);
    const stored = samples.every((s) => s.bytes && s.bytes[0] === 0xff && s.bytes[1] === 0xd8);
    const headOut = new Map<Session, Tensor>();
    for (const p of paths) {
      if (p.skip?.(stored)) continue;
      const a = acc(p);
      if (p.method === 'unsplit') {
        const out = await p.tail.run(x);
        ys.forEach((y, i) => (a.correct += argmax(out, i) === y ? 1 : 0));
        continue;
      }
      let feats: Tensor | null = null;
      if (p.head) {
        feats = headOut.get(p.head) ?? (await p.head.run(x));
        headOut.set(p.head, feats);
      }
      const inputs: Tensor[] = [];
      for (let i = 0; i < samples.length; i++) {
        const bytes = await p.device(
          feats ? sliceBatch(feats, i) : pxs[i]!,
          imgs[i]!,
          samples[i]!.bytes,
          frameId++,
        );
        a.framed += bytes.byteLength;
        const payload = decodeFrame(bytes).payload;
        a.payload += payload.byteLength;
        a.wire += mqttPublishBytes(topic, bytes.byteLength);
        // the same payload as a wire v2 stream sends it: in its session context
        const v2 = v2FrameBytes(payload.byteLength);
        a.framedV2 += v2;
        a.wireV2 += mqttPublishBytes(topicV2, v2);
        if (p.version1Bytes && feats) a.payloadV1 += p.version1Bytes(sliceBatch(feats, i));
        inputs.push(await p.edge(bytes));
      }
      const out = await p.tail.run(stack(inputs));
      ys.forEach((y, i) => (a.correct += argmax(out, i) === y ? 1 : 0));
    }
    total += samples.length;
    bar?.update(total);
  };

  // CIFAR-10 for a CIFAR-10 model, else any ImageFolder labelled with the model's labels
  const labels = m.labels;
  for await (const s of readSamples(opts.data, { split: 'test', limit: opts.limit, labels })) {
    if (s.label === undefined) throw new Error(`sample ${s.name} has no label`);
    if (!s.bytes && !s.rgb) continue;
    batch.push(s);
    if (batch.length >= batchSize) await flush();
  }
  await flush();
  bar?.setTotal(total);
  bar?.stop();
  await close();
  if (total === 0) throw new Error(`no labelled test samples in ${opts.data}`);

  // Timing: one thread, one sample at a time, the device and edge halves apart.
  if (timed.length > 0) {
    const one = await buildPaths(1);
    const storedAll = timed.every((s) => s.stored && s.stored[0] === 0xff && s.stored[1] === 0xd8);
    const warm = Math.min(5, timed.length);
    for (const p of one.paths) {
      if (p.skip?.(storedAll)) continue;
      const a = acc(p);
      const enc: number[] = [];
      const dec: number[] = [];
      for (let k = 0; k < warm + timed.length; k++) {
        const s = timed[k % timed.length]!;
        const x = { data: s.px.data, shape: [1, ...s.px.shape] };
        const t0 = performance.now();
        const input = p.head ? sliceBatch(await p.head.run(x), 0) : s.px;
        const bytes = await p.device(
          p.method === 'unsplit' ? x : input,
          s.img,
          s.stored,
          frameId++,
        );
        const t1 = performance.now();
        if (p.method !== 'unsplit') {
          const e = await p.edge(bytes);
          await p.tail.run({ data: e.data, shape: [1, ...e.shape] });
        }
        const t2 = performance.now();
        if (k >= warm) {
          enc.push(t1 - t0);
          dec.push(t2 - t1);
        }
      }
      a.encMs = percentile(enc, 50);
      a.decMs = percentile(dec, 50);
    }
    await one.close();
  }

  const splitTensorBytes = numel(m.split.tensorShape) * 4;
  const unsplitAccuracy = accs.get('unsplit/local/')!.correct / total;
  const rows: RateRow[] = [...accs.values()].map((a) => {
    const accuracy = a.correct / total;
    const framed = a.framed / total;
    const framedV2 = a.framedV2 / total;
    return {
      method: a.method,
      point: a.point,
      payloadBytes: round(a.payload / total, 1),
      bytesPerSample: round(framed, 1),
      wireBytes: round(a.wire / total, 1),
      ratioVsSplitTensor: framed > 0 ? round(splitTensorBytes / framed, 2) : 0,
      framedV2Bytes: round(framedV2, 1),
      wireV2Bytes: round(a.wireV2 / total, 1),
      ratioV2VsSplitTensor: framedV2 > 0 ? round(splitTensorBytes / framedV2, 2) : 0,
      accuracy: round(accuracy, 4),
      drop: round(unsplitAccuracy - accuracy, 4),
      encoderFlops: a.flops,
      encoderMsPerSample: round(a.encMs, 3),
      decoderMsPerSample: round(a.decMs, 3),
      ...(a.estimate !== undefined ? { estimatedPayloadBytes: round(a.estimate, 1) } : {}),
      ...(a.payloadV1 > 0 ? { payloadVersion1Bytes: round(a.payloadV1 / total, 1) } : {}),
    };
  });
  return {
    dataset: opts.data,
    samples: total,
    timingSamples: timed.length,
    limited: opts.limit !== undefined,
    model: `${m.name}@${m.version}`,
    splitPoint: m.split.point,
    splitShape: m.split.tensorShape,
    splitTensorBytes,
    unsplitAccuracy: round(unsplitAccuracy, 4),
    rows,
  };
}

function rateTitle(r: RateReport): string {
  return (
    `${r.model}, split after ${r.splitPoint} [${r.splitShape.join('x')}] = ${r.splitTensorBytes} B fp32; ` +
    `${r.samples} test samples of ${r.dataset}${r.limited ? ' (LIMITED run: not a result)' : ''}; ` +
    (r.timingSamples > 0
      ? `times: median of ${r.timingSamples} samples after 5 warm-up runs, one thread, batch 1`
      : 'times: not measured (--timing 0)')
  );
}

const HEAD = [
  'method',
  'point',
  'payload B',
  'framed B',
  'MQTT B',
  'x vs split',
  'framed v2 B',
  'x vs split (v2)',
  'top-1',
  'drop',
  'device MFLOPs',
  'device ms',
  'edge ms',
];

/** `timed`: false when the run timed nothing (--timing 0): the time cells show '-'. */
function cells(row: RateRow, timed: boolean): (string | number)[] {
  return [
    row.method,
    row.point,
    row.payloadBytes,
    row.bytesPerSample,
    row.wireBytes,
    row.ratioVsSplitTensor,
    row.framedV2Bytes ?? '-',
    row.ratioV2VsSplitTensor ?? '-',
    (row.accuracy * 100).toFixed(2) + '%',
    (row.drop * 100).toFixed(2),
    (row.encoderFlops / 1e6).toFixed(1),
    timed ? row.encoderMsPerSample.toFixed(2) : '-',
    timed ? row.decoderMsPerSample.toFixed(2) : '-',
  ];
}

export function rateTable(r: RateReport): string {
  const t = new Table({ head: HEAD, style: { head: [], border: [] } });
  for (const row of r.rows) t.push(cells(row, r.timingSamples > 0));
  return `${rateTitle(r)}\n${t.toString()}`;
}

/** The same table in Markdown, for pasting into READMEs. */
export function rateMarkdown(r: RateReport): string {
  const lines = [
    `| ${HEAD.join(' | ')} |`,
    `| --- | --- |${' ---: |'.repeat(HEAD.length - 2)}`,
    ...r.rows.map((row) => `| ${cells(row, r.timingSamples > 0).join(' | ')} |`),
  ];
  return `${rateTitle(r)}\n\n${lines.join('\n')}`;
}
