/**
 * Learned feature codecs (BottleNet++, AECNN, FrankenSplit): the bit-level half. The
 * networks live in the bundle (device: image -> integer symbols; edge: symbols ->
 * logits); this codec moves the symbols of one operating point:
 *
 *   rans  the first `keep` channels, each element with its channel's CDF table (rans.ts)
 *   raw8  the first `keep` channels, one byte per symbol (BottleNet++: no entropy coding)
 *
 * A rANS codec writes the latest stream layout (rans.ts: stream 2, the trimmed flush) as
 * its bitstream version and reads every layout, so frames of agents that write stream 1
 * still decode. The manifest's `version` is the layout its fixtures and figures were made
 * with; a bundle made with a layout this build does not know is refused.
 *
 * The decoder fills channels the device did not send with -1, which the edge network
 * reads as "absent". The codec is bound to its bundle's tables, so a bundle builds it
 * (core/model/load.ts) from its manifest's codec section and tables files: this module
 * takes them as data and knows nothing of bundles. Its id is pinned in ids.ts all the same.
 */
import { numel, type Tensor } from '../tensor.js';
import {
  checkTable,
  isRansStream,
  LATEST_RANS_STREAM,
  RANS_STREAMS,
  ransDecode,
  ransEncode,
  type CdfTable,
  type RansStream,
} from './rans.js';
import { checkPoint, CodecError, type FeatureCodec } from './types.js';

/** Parse and check a tables file ({probBits, tables: [{offset, cdf}]}). */
export function parseTables(text: string): CdfTable[] {
  const doc = JSON.parse(text) as { probBits?: unknown; tables?: unknown };
  if (doc.probBits !== 16 || !Array.isArray(doc.tables) || doc.tables.length === 0) {
    throw new CodecError('tables file: expected {probBits: 16, tables: [...]}');
  }
  return doc.tables.map((t: { offset?: unknown; cdf?: unknown }, i) => {
    if (typeof t.offset !== 'number' || !Array.isArray(t.cdf)) {
      throw new CodecError(`tables file: table ${i} needs offset and cdf`);
    }
    const table = { offset: t.offset, cdf: Uint32Array.from(t.cdf as number[]) };
    checkTable(table, i);
    return table;
  });
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** One operating point as the codec needs it: which channels travel, and how. */
export interface LearnedPoint {
  index: number;
  label: string;
  method: string;
  /** Role of the CDF tables (rANS coding); null for raw 8-bit symbols. */
  entropy: string | null;
  symbolShape: readonly number[];
  /** Channels sent (the rest arrive as -1). */
  keep: number;
}

/** What a learned codec is: a bundle manifest's `codec` section fits it as it is. */
export interface LearnedCodecSpec {
  method: string;
  id: number;
  version: number;
  points: readonly LearnedPoint[];
}

export function learnedCodec(
  c: LearnedCodecSpec,
  tablesByRole: ReadonlyMap<string, CdfTable[]>,
): FeatureCodec {
  const byIndex = new Map<number, { p: LearnedPoint; tables: CdfTable[] | null }>();
  for (const p of c.points) {
    const tables = p.entropy === null ? null : (tablesByRole.get(p.entropy) ?? null);
    if (p.entropy !== null && (!tables || tables.length < p.keep)) {
      throw new CodecError(`${c.method} point ${p.index}: needs ${p.keep} tables`);
    }
    byIndex.set(p.index, { p, tables });
  }
  const point = (codec: FeatureCodec, index: number) => {
    checkPoint(codec, index);
    return byIndex.get(index)!;
  };
  const coded = c.points.some((p) => p.entropy !== null);
  if (coded && !isRansStream(c.version)) {
    throw new CodecError(
      `${c.method}: bitstream version ${c.version} is not one this build reads (${RANS_STREAMS.join(', ')})`,
    );
  }
  const version = coded ? LATEST_RANS_STREAM : c.version;
  const reads: readonly number[] = coded ? RANS_STREAMS : [c.version];
  /** The rANS layout of bitstream version v (raw8 codecs ignore it). */
  const stream = (v: number): RansStream => {
    if (!reads.includes(v)) {
      throw new CodecError(
        `${c.method}: bitstream version ${v} is not read here (${reads.join(', ')})`,
      );
    }
    return isRansStream(v) ? v : LATEST_RANS_STREAM;
  };

  return {
    kind: 'feature',
    id: c.id,
    name: c.method,
    version,
    reads,
    points: c.points.map((p) => ({ index: p.index, label: p.label, method: p.method })),
    encode(t: Tensor, index: number, v: number = version): Uint8Array {
      const { p, tables } = point(this, index);
      const s = stream(v);
      if (!sameShape(t.shape, p.symbolShape)) {
        throw new CodecError(
          `${c.method}: symbols [${t.shape.join(',')}] do not match [${p.symbolShape.join(',')}]`,
        );
      }
      const hw = p.symbolShape[1]! * p.symbolShape[2]!;
      const n = p.keep * hw;
      const values = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = t.data[i]!;
        if (!Number.isInteger(v) || Math.abs(v) > 2 ** 29) {
          throw new CodecError(`${c.method}: symbol ${i} is not a small integer: ${v}`);
        }
        values[i] = v;
      }
      if (tables === null) {
        const out = new Uint8Array(n);
        for (let i = 0; i < n; i++) {
          if (values[i]! < 0 || values[i]! > 255) {
            throw new CodecError(`${c.method}: symbol ${i} = ${values[i]} is not 8-bit`);
          }
          out[i] = values[i]!;
        }
        return out;
      }
      return ransEncode(values, tables, (i) => Math.floor(i / hw), s);
    },
    decode(payload: Uint8Array, shape: readonly number[], index: number, v = version): Tensor {
      const { p, tables } = point(this, index);
      const s = stream(v);
      if (!sameShape(shape, p.symbolShape)) {
        throw new CodecError(
          `${c.method}: frame shape [${shape.join(',')}] is not [${p.symbolShape.join(',')}]`,
        );
      }
      const hw = p.symbolShape[1]! * p.symbolShape[2]!;
      const n = p.keep * hw;
      const data = new Float32Array(numel(p.symbolShape)).fill(-1);
      if (tables === null) {
        if (payload.byteLength !== n) {
          throw new CodecError(`${c.method}: ${payload.byteLength} bytes for ${n} symbols`);
        }
        for (let i = 0; i < n; i++) data[i] = payload[i]!;
      } else {
        const values = ransDecode(payload, n, tables, (i) => Math.floor(i / hw), undefined, s);
        for (let i = 0; i < n; i++) data[i] = values[i]!;
      }
      return { data, shape: [...p.symbolShape] };
    },
  };
}
