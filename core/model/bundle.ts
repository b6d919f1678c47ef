/**
 * Model bundles: a folder with manifest.json and the files it lists (head for the
 * device, tail for the edge; tail(head(x)) is the unsplit model), each named with its hash and checked against the sha256 in the manifest
 * before it is used. The manifest is written by models/splitfleet_models/export.py.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Ajv, type JSONSchemaType } from 'ajv';
import type { Preprocessing } from '../image/image.js';
import { ZOO_DIR } from '../paths.js';

export const MANIFEST_FORMAT = 1;

export interface BundleFile {
  path: string;
  sha256: string;
  /** Tensor shape of the model input / output, -1 for the batch axis. */
  input: number[];
  output: number[];
}

export interface Manifest {
  format: number;
  name: string;
  modelId: number;
  version: number;
  arch: string;
  dataset: string;
  labels: string[];
  preprocessing: Preprocessing;
  split: {
    point: string;
    points: string[];
    tensorShape: number[];
    headMacs: number;
    tailMacs: number;
  };
  files: { head: BundleFile; tail: BundleFile };
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

const fileSchema = {
  type: 'object',
  required: ['path', 'sha256', 'input', 'output'],
  properties: {
    path: { type: 'string', pattern: '^[A-Za-z0-9_.-]+$' },
    sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
    input: { type: 'array', items: { type: 'integer' } },
    output: { type: 'array', items: { type: 'integer' } },
  },
} as const;

const manifestSchema: JSONSchemaType<Manifest> = {
  type: 'object',
  required: [
    'format',
    'name',
    'modelId',
    'version',
    'labels',
    'preprocessing',
    'split',
    'files',
    'accuracy',
  ],
  properties: {
    format: { type: 'integer', const: MANIFEST_FORMAT },
    name: { type: 'string', pattern: '^[a-z0-9][a-z0-9.-]*$' },
    modelId: { type: 'integer', minimum: 1, maximum: 65535 },
    version: { type: 'integer', minimum: 1, maximum: 65535 },
    arch: { type: 'string' },
    dataset: { type: 'string' },
    labels: { type: 'array', items: { type: 'string' }, minItems: 2 },
    preprocessing: {
      type: 'object',
      required: ['layout', 'size', 'colorSpace', 'pixelDivisor', 'mean', 'std', 'resize'],
      properties: {
        layout: { type: 'string', const: 'NCHW' },
        size: {
          type: 'array',
          items: [{ type: 'integer' }, { type: 'integer' }],
          minItems: 2,
          maxItems: 2,
        },
        colorSpace: { type: 'string', const: 'RGB' },
        pixelDivisor: { type: 'number', exclusiveMinimum: 0 },
        mean: {
          type: 'array',
          items: [{ type: 'number' }, { type: 'number' }, { type: 'number' }],
          minItems: 3,
          maxItems: 3,
        },
        std: {
          type: 'array',
          items: [{ type: 'number' }, { type: 'number' }, { type: 'number' }],
          minItems: 3,
          maxItems: 3,
        },
        resize: { type: 'string', const: 'none' },
      },
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
    files: {
      type: 'object',
      required: ['head', 'tail'],
      properties: { head: fileSchema, tail: fileSchema },
    },
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
} as unknown as JSONSchemaType<Manifest>;

const validate = new Ajv({ allErrors: true }).compile(manifestSchema);

export class BundleError extends Error {
  override name = 'BundleError';
}

export interface Bundle {
  dir: string;
  manifest: Manifest;
  /** Absolute path of a listed file, after its hash was verified. */
  file(role: keyof Manifest['files']): string;
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Load a bundle folder: validate the manifest and verify every file's sha256. */
export async function loadBundle(dir: string): Promise<Bundle> {
  const abs = resolve(dir);
  let manifest: unknown;
  try {
    manifest = JSON.parse(await readFile(join(abs, 'manifest.json'), 'utf8'));
  } catch (e) {
    throw new BundleError(`cannot read ${join(abs, 'manifest.json')}: ${(e as Error).message}`);
  }
  if (!validate(manifest)) {
    const errs = (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`);
    throw new BundleError(`invalid manifest in ${abs}: ${errs.join('; ')}`);
  }
  const m = manifest;
  for (const [role, f] of Object.entries(m.files)) {
    const bytes = await readFile(join(abs, f.path)).catch((e: Error) => {
      throw new BundleError(`bundle ${m.name}: missing ${role} file ${f.path}: ${e.message}`);
    });
    const got = sha256(bytes);
    if (got !== f.sha256) {
      throw new BundleError(
        `bundle ${m.name}: ${f.path} has sha256 ${got}, manifest says ${f.sha256}`,
      );
    }
  }
  return {
    dir: abs,
    manifest: m,
    file: (role) => join(abs, m.files[role].path),
  };
}

/** Every bundle in a zoo folder, keyed "name" and "modelId:version". */
export async function listZoo(zoo = ZOO_DIR): Promise<Manifest[]> {
  const out: Manifest[] = [];
  for (const d of await readdir(zoo, { withFileTypes: true }).catch(() => [])) {
    if (!d.isDirectory()) continue;
    try {
      const m = JSON.parse(await readFile(join(zoo, d.name, 'manifest.json'), 'utf8')) as unknown;
      if (validate(m)) out.push(m);
    } catch {
      // not a bundle folder
    }
  }
  return out.sort((a, b) => a.modelId - b.modelId || a.version - b.version);
}

/** Resolve a model by bundle folder, by name ("resnet9w05-cifar10" = newest version) or name@version. */
export async function resolveModel(ref: string, zoo = ZOO_DIR): Promise<Bundle> {
  if (ref.includes('/')) return loadBundle(ref);
  const [name, ver] = ref.split('@');
  const all = await listZoo(zoo);
  const hits = all.filter(
    (m) => m.name === name && (ver === undefined || String(m.version) === ver),
  );
  const m = hits[hits.length - 1];
  if (!m) {
    throw new BundleError(
      `unknown model ${JSON.stringify(ref)}; the zoo has ${all.map((x) => `${x.name}@${x.version}`).join(', ') || 'nothing'}`,
    );
  }
  return loadBundle(join(zoo, `${m.name}-v${m.version}`));
}
