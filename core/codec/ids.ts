/**
 * Every pinned codec id, the number a frame carries in its codec field. Ids are written
 * here by hand and never derived from registration order; a retired id is never reused.
 *
 *   1 split-fp32    2 split-fp16    3 split-q (uniform n-bit + deflate)   feature codecs
 *   4 bottlenetpp  5 aecnn  6 frankensplit  7 splitfleet   learned feature codecs: bound
 *     to a bundle's tables, so a bundle brings them (8..15 reserved for more)
 *   16 jpeg  17 jpeg-scan  18 webp  19 png   image codecs (input offload: the edge runs
 *     the whole model on the image)
 *
 * Pure data with no imports: the Node-RED package and manifest checks read it without
 * loading any codec.
 */

/** Codecs the registry holds itself (core/codec/registry.ts). */
export const FEATURE_CODEC_IDS = Object.freeze({
  'split-fp32': 1,
  'split-fp16': 2,
  'split-q': 3,
} as const);

/** Pinned ids of the learned codecs; a bundle whose manifest disagrees is refused. */
export const LEARNED_CODEC_IDS = Object.freeze({
  bottlenetpp: 4,
  aecnn: 5,
  frankensplit: 6,
  splitfleet: 7,
} as const);

/** Image codecs: the device sends the picture, the edge runs head and tail on it. */
export const IMAGE_CODEC_IDS = Object.freeze({
  jpeg: 16,
  'jpeg-scan': 17,
  webp: 18,
  png: 19,
} as const);

export type CodecKind = 'feature' | 'learned' | 'image';

export interface PinnedCodec {
  id: number;
  name: string;
  kind: CodecKind;
}

/** Every pinned codec, by id. */
export const PINNED_CODECS: readonly PinnedCodec[] = Object.freeze(
  (
    [
      ['feature', FEATURE_CODEC_IDS],
      ['learned', LEARNED_CODEC_IDS],
      ['image', IMAGE_CODEC_IDS],
    ] as const
  )
    .flatMap(([kind, ids]) =>
      Object.entries(ids).map(([name, id]) => Object.freeze({ id, name, kind })),
    )
    .sort((a, b) => a.id - b.id),
);

/** The pinned codec with this id or name, or undefined. */
export function pinnedCodec(ref: number | string): PinnedCodec | undefined {
  return PINNED_CODECS.find((c) => (typeof ref === 'number' ? c.id === ref : c.name === ref));
}

/** Whether `name` is a learned codec (its bundle brings it). */
export function isLearnedCodec(name: string): name is keyof typeof LEARNED_CODEC_IDS {
  return Object.hasOwn(LEARNED_CODEC_IDS, name);
}

/** Whether `name` is an image codec. */
export function isImageCodec(name: string): name is keyof typeof IMAGE_CODEC_IDS {
  return Object.hasOwn(IMAGE_CODEC_IDS, name);
}
