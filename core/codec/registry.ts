/**
 * The codec registry: every pinned id (ids.ts) to its codec, built once and frozen. The
 * feature codecs (split-fp32, split-fp16, split-q) and the image codecs (jpeg, jpeg-scan,
 * webp, png) live here; a learned codec's id is pinned here too, but its codec is bound
 * to its bundle's tables and comes with the bundle (Bundle.codec), so looking one up
 * here says so.
 */
import { splitFp16, splitFp32 } from './float.js';
import { imageCodecs } from './image.js';
import { IMAGE_CODEC_IDS, LEARNED_CODEC_IDS, pinnedCodec, PINNED_CODECS } from './ids.js';
import { splitQuant } from './quant.js';
import { CodecError, type Codec, type FeatureCodec, type ImageCodec } from './types.js';

export { IMAGE_CODEC_IDS, LEARNED_CODEC_IDS, PINNED_CODECS };

function build(codecs: readonly Codec[]): ReadonlyMap<number | string, Codec> {
  const map = new Map<number | string, Codec>();
  for (const c of codecs) {
    const pinned = pinnedCodec(c.id);
    if (!pinned || pinned.name !== c.name || pinned.kind === 'learned') {
      throw new Error(`codec ${c.name} (${c.id}) is not pinned as such in ids.ts`);
    }
    if (map.has(c.id) || map.has(c.name)) throw new Error(`codec ${c.name} (${c.id}) twice`);
    Object.freeze(c.points);
    map.set(c.id, Object.freeze(c));
    map.set(c.name, c);
  }
  return map;
}

const CODECS = build([splitFp32, splitFp16, splitQuant, ...imageCodecs]);

/** The codec of this pinned id or name; throws CodecError for an unknown one, and for a
 * learned codec, which comes with its model bundle. */
export function lookupCodec(ref: number | string): Codec {
  const c = CODECS.get(ref);
  if (c) return c;
  const pinned = pinnedCodec(ref);
  if (pinned?.kind === 'learned') {
    throw new CodecError(`codec ${pinned.name} (${pinned.id}) comes with its model bundle`);
  }
  throw new CodecError(
    typeof ref === 'number'
      ? `unknown codec id ${ref}`
      : `unknown codec ${JSON.stringify(ref)}; known: ${PINNED_CODECS.map((p) => p.name).join(', ')}`,
  );
}

/** Every codec the registry holds, by id (feature codecs, then image codecs). */
export function allCodecs(): Codec[] {
  return [...new Set(CODECS.values())].sort((a, b) => a.id - b.id);
}

/** Every codec name a setting may name: the registry's and the learned ones. */
export function codecNames(): string[] {
  return PINNED_CODECS.map((p) => p.name);
}

function featureOnly(c: Codec): FeatureCodec {
  if (c.kind !== 'feature') {
    throw new CodecError(`codec ${c.name} (${c.id}) is an image codec, not a feature codec`);
  }
  return c;
}

/** The feature codec of this pinned id (throws CodecError for any other). */
export function codecById(id: number): FeatureCodec {
  return featureOnly(lookupCodec(id));
}

/** The feature codec of this name (throws CodecError for any other). */
export function codecByName(name: string): FeatureCodec {
  return featureOnly(lookupCodec(name));
}

/** The image codec of this name, or undefined when `name` is not one. */
export function imageCodecByName(name: string): ImageCodec | undefined {
  const c = CODECS.get(name);
  return c?.kind === 'image' ? c : undefined;
}

/** The feature codecs the registry holds (split-fp32, split-fp16, split-q), by id. */
export function listCodecs(): FeatureCodec[] {
  return allCodecs().filter((c): c is FeatureCodec => c.kind === 'feature');
}
