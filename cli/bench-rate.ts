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
import { codecById, listCodecs } from '../core/codec/registry.js';
import type { FeatureCodec } from '../core/codec/types.js';
import { readSamples, type Sample } from '../core/data/cifar.js';
import { onnxEngine } from '../core/engine/onnx.js';
import { decodeImage, preprocess, type RgbImage } from '../core/image/image.js';
import type { Bundle } from '../core/model/bundle.js';
import { decodeFrame, encodeFrame } from '../core/protocol/frame.js';
import { deviceTopic } from '../core/protocol/topics.js';
import { numel, sliceBatch, stack, type Tensor } from '../core/tensor.js';
import { round } from '../core/util/stats.js';

export interface RateRow {
  method: string;
  point: string;
  payloadBytes: number;
  bytesPerSample: number;
  wireBytes: number;
  ratioVsSplitTensor: number;
  accuracy: number;
  drop: number;
}

export interface RateReport {
  dataset: string;
  samples: number;
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
}

function argmax(t: Tensor, i: number): number {
  const row = sliceBatch(t, i).data;
  let best = 0;
  for (let j = 1; j < row.length; j++) if (row[j]! > row[best]!) best = j;
  return best;
}

export async function benchRate(opts: {
  data: string;
  bundle: Bundle;
  limit?: number;
  batch?: number;
  threads?: number;
  progress?: boolean;
}): Promise<RateReport> {
  const m = opts.bundle.manifest;
  const threads = opts.threads ?? 2;
  const load = (r: 'head' | 'tail') => onnxEngine.load(opts.bundle.file(r), { threads });
  const [head, tail] = [await load('head'), await load('tail')];
  /** The unsplit model: the same head and tail with nothing in between. */
  const full = { run: async (x: Tensor) => tail.run(await head.run(x)) };
  const topic = deviceTopic('default', 'device-0001', 'features');
  const featureCodecs: FeatureCodec[] = listCodecs();
  const accs = new Map<string, Acc>();
  const acc = (method: string, point: string) => {
    const k = `${method}/${point}`;
    let a = accs.get(k);
    if (!a) accs.set(k, (a = { method, point, correct: 0, payload: 0, framed: 0, wire: 0 }));
    return a;
  };
  const header = (
    codecId: number,
    codecVersion: number,
    point: number,
    shape: number[],
    payload: Uint8Array,
    id: number,
  ) =>
    encodeFrame({
      frameId: id,
      modelId: m.modelId,
      modelVersion: m.version,
      codecId,
      codecVersion,
      point,
      shape,
      captureTs: Date.now(),
      payload,
    });
  const count = (a: Acc, payload: number, frame: number) => {
    a.payload += payload;
    a.framed += frame;
    a.wire += mqttPublishBytes(topic, frame);
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

  const batchSize = opts.batch ?? 200;
  let batch: Sample[] = [];
  // Frame ids as a device makes them (always >= 2^28): a uint32 costs 5 bytes in msgpack,
  // so every row pays the same real header.
  let frameId = 0x1000_0000;

  const flush = async () => {
    if (batch.length === 0) return;
    const samples = batch;
    batch = [];
    const ys = samples.map((s) => s.label ?? -1);
    const pixels: RgbImage[] = await Promise.all(
      samples.map((s) => (s.rgb ? s.rgb : decodeImage(s.bytes!))),
    );
    const x = stack(
      pixels
        .map((p) => preprocess(p, m.preprocessing))
        .map((t) => ({ data: t.data, shape: t.shape.slice(1) })),
    );

    const feats = await head.run(x);
    const unsplit = await tail.run(feats);
    const u = acc('unsplit', 'local');
    ys.forEach((y, i) => (u.correct += argmax(unsplit, i) === y ? 1 : 0));

    const shape = feats.shape.slice(1);
    for (const c of featureCodecs) {
      for (const p of c.points) {
        const a = acc(p.method, p.label);
        const decoded: Tensor[] = [];
        for (let i = 0; i < samples.length; i++) {
          const payload = c.encode(sliceBatch(feats, i), p.index);
          const bytes = header(c.id, c.version, p.index, shape, payload, frameId++);
          count(a, payload.byteLength, bytes.byteLength);
          const f = decodeFrame(bytes);
          decoded.push(codecById(f.codecId).decode(f.payload, f.shape, f.point));
        }
        const out = await tail.run(stack(decoded));
        ys.forEach((y, i) => (a.correct += argmax(out, i) === y ? 1 : 0));
      }
    }

    // 'jpeg as stored' needs the stored JPEG files (not in the binary release).
    const stored = samples.every((s) => s.bytes && s.bytes[0] === 0xff && s.bytes[1] === 0xd8);
    for (const c of imageCodecs) {
      for (const p of c.points) {
        if (c.name === 'jpeg' && p.quality === undefined && !stored) continue;
        const a = acc(p.method, p.label);
        const restored = await Promise.all(
          samples.map(async (s, i) => {
            const payload = await c.encode(pixels[i]!, p.index, s.bytes);
            const bytes = header(
              c.id,
              c.version,
              p.index,
              [3, pixels[i]!.height, pixels[i]!.width],
              payload,
              frameId++,
            );
            count(a, payload.byteLength, bytes.byteLength);
            const f = decodeFrame(bytes);
            return preprocess(await c.decode(f.payload, f.point), m.preprocessing);
          }),
        );
        const out = await full.run(
          stack(restored.map((t) => ({ data: t.data, shape: t.shape.slice(1) }))),
        );
        ys.forEach((y, i) => (a.correct += argmax(out, i) === y ? 1 : 0));
      }
    }
    total += samples.length;
    bar?.update(total);
  };

  for await (const s of readSamples(opts.data, { split: 'test', limit: opts.limit })) {
    if (s.label === undefined) throw new Error(`sample ${s.name} has no label`);
    if (!s.bytes && !s.rgb) continue;
    batch.push(s);
    if (batch.length >= batchSize) await flush();
  }
  await flush();
  bar?.setTotal(total);
  bar?.stop();
  await Promise.all([head, tail].map((s) => s.close()));
  if (total === 0) throw new Error(`no labelled test samples in ${opts.data}`);

  const splitTensorBytes = numel(m.split.tensorShape) * 4;
  const unsplitAccuracy = accs.get('unsplit/local')!.correct / total;
  const rows: RateRow[] = [...accs.values()].map((a) => {
    const accuracy = a.correct / total;
    const framed = a.framed / total;
    return {
      method: a.method,
      point: a.point,
      payloadBytes: round(a.payload / total, 1),
      bytesPerSample: round(framed, 1),
      wireBytes: round(a.wire / total, 1),
      ratioVsSplitTensor: framed > 0 ? round(splitTensorBytes / framed, 2) : 0,
      accuracy: round(accuracy, 4),
      drop: round(unsplitAccuracy - accuracy, 4),
    };
  });
  return {
    dataset: opts.data,
    samples: total,
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
    `${r.samples} test samples of ${r.dataset}${r.limited ? ' (LIMITED run: not a result)' : ''}`
  );
}

export function rateTable(r: RateReport): string {
  const t = new Table({
    head: ['method', 'point', 'payload B', 'framed B', 'MQTT B', 'x vs split', 'top-1', 'drop'],
    style: { head: [], border: [] },
  });
  for (const row of r.rows) {
    t.push([
      row.method,
      row.point,
      row.payloadBytes,
      row.bytesPerSample,
      row.wireBytes,
      row.ratioVsSplitTensor,
      (row.accuracy * 100).toFixed(2) + '%',
      (row.drop * 100).toFixed(2),
    ]);
  }
  return `${rateTitle(r)}\n${t.toString()}`;
}

/** The same table in Markdown, for pasting into READMEs. */
export function rateMarkdown(r: RateReport): string {
  const lines = [
    '| method | point | payload B | framed B | MQTT B | x vs split | top-1 | drop (pts) |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const row of r.rows) {
    lines.push(
      `| ${row.method} | ${row.point} | ${row.payloadBytes} | ${row.bytesPerSample} | ${row.wireBytes} | ` +
        `${row.ratioVsSplitTensor} | ${(row.accuracy * 100).toFixed(2)}% | ${(row.drop * 100).toFixed(2)} |`,
    );
  }
  return `${rateTitle(r)}\n\n${lines.join('\n')}`;
}
