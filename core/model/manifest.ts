/**
 * A bundle's manifest.json: its types, the JSON Schema every manifest is checked against,
 * migrations from older formats, and what follows from a manifest alone (which files
 * each side runs, the shape a frame carries, where the network is split). Two kinds:
 * a backbone (head for the device, tail for the edge, tail(head(x)) is the unsplit
 * model; written by models/splitfleet_models/export.py) and a learned codec (per
 * operating point a device network to integer symbols, CDF tables, an edge network;
 * written by export_codec.py).
 */
import { Ajv } from 'ajv';
import { LEARNED_CODEC_IDS } from '../codec/ids.js';
import type { ModelFormat } from '../engine/engine.js';
import type { Preprocessing } from '../image/image.js';
import {
  BUNDLE_NAME_PATTERN,
  bundleRefProblem,
  MAX_BUNDLE_VERSION,
  type BundleRef,
} from './ref.js';

export {
  BUNDLE_NAME_PATTERN,
  isBundleName,
  isBundleRef,
  isBundleVersion,
  MAX_BUNDLE_VERSION,
  type BundleRef,
} from './ref.js';

/**
 * Current manifest format. Older ones are migrated on load: format 1 (backbones only, no
 * `kind`) and format 2 (preprocessing could only say `resize: "none"`, RGB, NCHW; format
 * 3 adds `resize: "shorter"` with `resizeShorter`, BGR and NHWC). A runtime older than a
 * format refuses its manifests by their `format`.
 */
export const MANIFEST_FORMAT = 3;

/** Largest side of a network input a manifest may declare (pixels). */
export const MAX_INPUT_SIDE = 4096;

export interface BundleFile {
  path: string;
  sha256: string;
  /** Tensor shape of a model's input / output, -1 for the batch axis (ONNX files only). */
  input?: number[];
  output?: number[];
}

interface ManifestBase {
  format: number;
  name: string;
  modelId: number;
  version: number;
  arch: string;
  dataset: string;
  labels: string[];
  preprocessing: Preprocessing;
  /** role -> file; the roles a manifest names must all be here. */
  files: Record<string, BundleFile>;
  accuracy: {
    top1: number;
    split: string;
    samples: number;
    source: string;
    engine: string;
  };
  training: Record<string, unknown>;
  created: string;
}

/** A trained backbone split in two: head (device) and tail (edge), the split tensor between. */
export interface BackboneManifest extends ManifestBase {
  kind: 'backbone';
  split: {
    point: string;
    points: string[];
    tensorShape: number[];
    headMacs: number;
    tailMacs: number;
  };
}

/** One operating point of a learned codec: its networks, tables and measured figures. */
export interface CodecPoint {
  index: number;
  label: string;
  method: string;
  /** File roles: device network (image -> symbols), edge network (symbols -> logits). */
  head: string;
  tail: string;
  /** Role of the CDF tables (rANS coding); null for raw 8-bit symbols. */
  entropy: string | null;
  symbolShape: number[];
  /** Channels sent (the rest arrive as -1). */
  keep: number;
  deviceMacs: number;
  edgeMacs: number;
  top1: number;
  bitsPerImage: number;
}

/** A learned feature codec (BottleNet++, AECNN, FrankenSplit) with its own halves. */
export interface CodecManifest extends ManifestBase {
  kind: 'codec';
  codec: {
    method: string;
    id: number;
    version: number;
    coding: 'rans' | 'raw8';
    teacherPoint: string;
    /** Shape of the teacher's tensor at teacherPoint (the fp32 reference for ratios). */
    teacherShape: number[];
    teacherMacs: number;
    points: CodecPoint[];
  };
}

export type Manifest = BackboneManifest | CodecManifest;

/** A bundle named by a message (`{name, version, manifestSha256}`), checked by the
 * registry's rule (ref.ts) before anything uses it in a path; throws BundleError saying
 * which field is wrong. */
export function checkBundleRef(ref: unknown): BundleRef {
  const why = bundleRefProblem(ref);
  if (why) throw new BundleError(why);
  return ref as BundleRef;
}

const intArray = { type: 'array', items: { type: 'integer' } } as const;

const fileSchema = {
  type: 'object',
  required: ['path', 'sha256'],
  properties: {
    path: { type: 'string', pattern: '^[A-Za-z0-9_.-]+$' },
    sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
    input: intArray,
    output: intArray,
  },
} as const;

const pointSchema = {
  type: 'object',
  required: [
    'index',
    'label',
    'method',
    'head',
    'tail',
    'entropy',
    'symbolShape',
    'keep',
    'deviceMacs',
    'edgeMacs',
    'top1',
    'bitsPerImage',
  ],
  properties: {
    index: { type: 'integer', minimum: 0, maximum: 255 },
    label: { type: 'string' },
    method: { type: 'string' },
    head: { type: 'string' },
    tail: { type: 'string' },
    entropy: { type: ['string', 'null'] },
    symbolShape: {
      type: 'array',
      items: { type: 'integer', minimum: 1 },
      minItems: 3,
      maxItems: 3,
    },
    keep: { type: 'integer', minimum: 1 },
    deviceMacs: { type: 'integer' },
    edgeMacs: { type: 'integer' },
    top1: { type: 'number', minimum: 0, maximum: 1 },
    bitsPerImage: { type: 'number', minimum: 0 },
  },
} as const;

const manifestSchema = {
  type: 'object',
  required: [
    'format',
    'kind',
    'name',
    'modelId',
    'version',
    'labels',
    'preprocessing',
    'files',
    'accuracy',
  ],
  properties: {
    format: { type: 'integer', const: MANIFEST_FORMAT },
    kind: { enum: ['backbone', 'codec'] },
    name: { type: 'string', pattern: BUNDLE_NAME_PATTERN },
    modelId: { type: 'integer', minimum: 1, maximum: 65535 },
    version: { type: 'integer', minimum: 1, maximum: MAX_BUNDLE_VERSION },
    arch: { type: 'string' },
    dataset: { type: 'string' },
    labels: { type: 'array', items: { type: 'string' }, minItems: 2 },
    preprocessing: {
      type: 'object',
      required: ['layout', 'size', 'colorSpace', 'pixelDivisor', 'mean', 'std', 'resize'],
      properties: {
        layout: { enum: ['NCHW', 'NHWC'] },
        size: {
          type: 'array',
          items: [
            { type: 'integer', minimum: 1, maximum: MAX_INPUT_SIDE },
            { type: 'integer', minimum: 1, maximum: MAX_INPUT_SIDE },
          ],
          minItems: 2,
          maxItems: 2,
        },
        colorSpace: { enum: ['RGB', 'BGR'] },
        pixelDivisor: { type: 'number', exclusiveMinimum: 0 },
        mean: {
          type: 'array',
          items: [{ type: 'number' }, { type: 'number' }, { type: 'number' }],
          minItems: 3,
          maxItems: 3,
        },
        std: {
          type: 'array',
          items: [
            { type: 'number', exclusiveMinimum: 0 },
            { type: 'number', exclusiveMinimum: 0 },
            { type: 'number', exclusiveMinimum: 0 },
          ],
          minItems: 3,
          maxItems: 3,
        },
        resize: { enum: ['none', 'shorter'] },
        resizeShorter: { type: 'integer', minimum: 1, maximum: MAX_INPUT_SIDE },
      },
      if: { properties: { resize: { const: 'shorter' } } },
      then: { required: ['resizeShorter'] },
      else: { not: { required: ['resizeShorter'] } },
    },
    split: {
      type: 'object',
      required: ['point', 'points', 'tensorShape', 'headMacs', 'tailMacs'],
      properties: {
        point: { type: 'string' },
        points: { type: 'array', items: { type: 'string' } },
        tensorShape: { type: 'array', items: { type: 'integer', minimum: 1 } },
        headMacs: { type: 'integer' },
        tailMacs: { type: 'integer' },
      },
    },
    codec: {
      type: 'object',
      required: [
        'method',
        'id',
        'version',
        'coding',
        'teacherPoint',
        'teacherShape',
        'teacherMacs',
        'points',
      ],
      properties: {
        method: { type: 'string' },
        id: { type: 'integer', minimum: 1, maximum: 255 },
        version: { type: 'integer', minimum: 1, maximum: 255 },
        coding: { enum: ['rans', 'raw8'] },
        teacherPoint: { type: 'string' },
        teacherShape: { type: 'array', items: { type: 'integer', minimum: 1 } },
        teacherMacs: { type: 'integer' },
        points: { type: 'array', items: pointSchema, minItems: 1 },
      },
    },
    files: { type: 'object', additionalProperties: fileSchema },
    accuracy: {
      type: 'object',
      required: ['top1', 'split', 'samples', 'source', 'engine'],
      properties: {
        top1: { type: 'number', minimum: 0, maximum: 1 },
        split: { type: 'string' },
        samples: { type: 'integer' },
        source: { type: 'string' },
        engine: { type: 'string' },
      },
    },
    training: { type: 'object' },
    created: { type: 'string' },
  },
  if: { properties: { kind: { const: 'backbone' } } },
  then: {
    required: ['split'],
    properties: { files: { type: 'object', required: ['head', 'tail'] } },
  },
  else: { required: ['codec'] },
} as const;

/** Format 1 (backbones only) -> 2: the same fields plus `kind`; 2 -> 3: the same fields
 * (format 3 only widens what preprocessing may say). */
function migrate(m: unknown): unknown {
  if (!m || typeof m !== 'object') return m;
  const format = (m as { format?: unknown }).format;
  if (format === 1) return { ...m, format: 3, kind: 'backbone' };
  if (format === 2) return { ...m, format: 3 };
  return m;
}

const validate = new Ajv({ allErrors: true }).compile<Manifest>(manifestSchema);

export class BundleError extends Error {
  override name = 'BundleError';
}

/** Check a parsed manifest.json (migrated first); throws BundleError saying what is wrong. */
export function parseManifest(raw: unknown, where: string): Manifest {
  const m = migrate(raw);
  if (!validate(m)) {
    const errs = (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`);
    throw new BundleError(`invalid manifest in ${where}: ${errs.join('; ')}`);
  }
  const p = m.preprocessing;
  if (p.resize === 'shorter' && p.resizeShorter! < Math.min(p.size[0], p.size[1])) {
    throw new BundleError(
      `invalid manifest in ${where}: preprocessing resizeShorter ${p.resizeShorter} is smaller than the input ${p.size.join('x')}`,
    );
  }
  for (const role of Object.keys(m.files)) {
    if (role.endsWith('.tfjs') && !m.files[`${role}.weights`]) {
      throw new BundleError(`invalid manifest in ${where}: ${role} has no ${role}.weights file`);
    }
  }
  if (m.kind === 'codec') {
    const c = m.codec;
    const pinned = LEARNED_CODEC_IDS[c.method as keyof typeof LEARNED_CODEC_IDS];
    if (pinned !== c.id) {
      throw new BundleError(
        `invalid manifest in ${where}: codec ${c.method} has id ${c.id}, the registry pins ${pinned ?? 'no id'}`,
      );
    }
    const seen = new Set<number>();
    for (const p of c.points) {
      for (const role of [p.head, p.tail, p.entropy]) {
        if (role !== null && !m.files[role]) {
          throw new BundleError(
            `invalid manifest in ${where}: point ${p.index} names missing file ${role}`,
          );
        }
      }
      if ((p.entropy === null) !== (c.coding === 'raw8')) {
        throw new BundleError(
          `invalid manifest in ${where}: point ${p.index} tables do not fit coding ${c.coding}`,
        );
      }
      if (p.keep > p.symbolShape[0]! || seen.has(p.index)) {
        throw new BundleError(`invalid manifest in ${where}: point ${p.index} is inconsistent`);
      }
      seen.add(p.index);
    }
  }
  return m;
}

/**
 * The file role of network `role` in `format`: the ONNX file itself, or the TensorFlow.js
 * graph model the toolkit exported from it (models/splitfleet_models/export_tfjs.py):
 * `<role>.tfjs` (model.json) with its weights shard `<role>.tfjs.weights`.
 */
export function modelRole(role: string, format: ModelFormat = 'onnx'): string {
  return format === 'onnx' ? role : `${role}.tfjs`;
}

/** File roles of the device's part: the head of a backbone, or every point's device
 * network and tables of a learned codec; with each network its tfjs export, when the
 * bundle has one. */
export function deviceRoles(m: Manifest): string[] {
  const roles = new Set<string>();
  if (m.kind === 'backbone') roles.add('head');
  else {
    for (const p of m.codec.points) {
      roles.add(p.head);
      if (p.entropy !== null) roles.add(p.entropy);
    }
  }
  const nets = m.kind === 'backbone' ? ['head'] : m.codec.points.map((p) => p.head);
  for (const net of nets) {
    const tfjs = modelRole(net, 'tfjs');
    if (m.files[tfjs]) roles.add(tfjs).add(`${tfjs}.weights`);
  }
  return [...roles];
}

/** File roles a decoder process runs: the head and tail of a backbone (image frames run
 * the whole model at the edge), or every point's tail and entropy tables of a learned
 * codec. */
export function decoderRoles(m: Manifest): string[] {
  if (m.kind === 'backbone') return ['head', 'tail'];
  const roles = new Set<string>();
  for (const p of m.codec.points) {
    roles.add(p.tail);
    if (p.entropy !== null) roles.add(p.entropy);
  }
  return [...roles];
}

/** Parse manifest.json bytes (for a download, before any other file is there). */
export function parseManifestBytes(bytes: Uint8Array, where: string): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    throw new BundleError(`invalid manifest in ${where}: ${(e as Error).message}`);
  }
  return parseManifest(raw, where);
}

/** Symbols/tensor shape a frame of `point` carries, and the fp32 bytes of the tensor at the split. */
export function frameShape(m: Manifest, point: number): number[] {
  if (m.kind === 'backbone') return m.split.tensorShape;
  const p = m.codec.points.find((x) => x.index === point);
  if (!p) throw new BundleError(`model ${m.name} has no point ${point}`);
  return p.symbolShape;
}

/** The manifest of a backbone bundle; throws for a codec bundle. */
export function backbone(m: Manifest): BackboneManifest {
  if (m.kind !== 'backbone')
    throw new BundleError(`model ${m.name} is a ${m.kind} bundle, not a backbone`);
  return m;
}

/** Bytes of the float32 tensor at the model's split point (the reference for ratios). */
export function splitTensorBytes(m: Manifest): number {
  const shape = m.kind === 'backbone' ? m.split.tensorShape : m.codec.teacherShape;
  return shape.reduce((a, b) => a * b, 1) * 4;
}

/** Where the network is split: "layer1 [64x16x16]". */
export function describeSplit(m: Manifest): string {
  return m.kind === 'backbone'
    ? `${m.split.point} [${m.split.tensorShape.join('x')}]`
    : `${m.codec.method} into ${m.codec.teacherPoint}, ${m.codec.points.length} points`;
}
