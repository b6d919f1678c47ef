/**
 * Codec registry: pinned numeric ids -> codecs. Ids are written here by hand and never
 * derived from registration order; a retired id is never reused.
 *
 *   1 split-fp32    2 split-fp16    3 split-q (uniform n-bit + deflate)
 *   4 bottlenetpp  5 aecnn  6 frankensplit  7 splitfleet   (learned: bound to a bundle's
 *     tables, so loadBundle() builds them; 8..15 reserved for more learned codecs)
 *   16 jpeg  17 jpeg-scan  18 webp  19 png   (input offload; see core/codec/image.ts)
 */
import { splitFp16, splitFp32 } from './float.js';
import { splitQuant } from './quant.js';
import { CodecError, type FeatureCodec } from './types.js';

/** Pinned ids of the learned codecs; a bundle whose manifest disagrees is refused. */
export const LEARNED_CODEC_IDS = {
  bottlenetpp: 4,
  aecnn: 5,
  frankensplit: 6,
  splitfleet: 7,
} as const;

const byId = new Map<number, FeatureCodec>();
const byName = new Map<string, FeatureCodec>();

export function registerCodec(c: FeatureCodec): void {
  if (!Number.isInteger(c.id) || c.id < 1 || c.id > 255)
    throw new Error(`codec id ${c.id} out of range`);
  const taken = byId.get(c.id) ?? byName.get(c.name);
  if (taken && taken !== c) {
    throw new Error(`codec ${c.name} (${c.id}) collides with ${taken.name} (${taken.id})`);
  }
  byId.set(c.id, c);
  byName.set(c.name, c);
}

export function codecById(id: number): FeatureCodec {
  const c = byId.get(id);
  if (!c) {
    const learned = Object.entries(LEARNED_CODEC_IDS).find(([, v]) => v === id);
    throw new CodecError(
      learned
        ? `codec ${learned[0]} (${id}) comes with its model bundle`
        : `unknown codec id ${id}`,
    );
  }
  return c;
}

export function codecByName(name: string): FeatureCodec {
  const c = byName.get(name);
  if (!c)
    throw new CodecError(
      `unknown codec ${JSON.stringify(name)}; known: ${[...byName.keys()].join(', ')}`,
    );
  return c;
}

export function listCodecs(): FeatureCodec[] {
  return [...byId.values()].sort((a, b) => a.id - b.id);
}

for (const c of [splitFp32, splitFp16, splitQuant]) registerCodec(c);
