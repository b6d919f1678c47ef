/**
 * What `bench latency --methods` names: a default method by name, codec or kind, or any
 * "<codec> <point label>" the backbone serves (an input codec's quality, e.g. "webp q50",
 * or a learned codec's point from its bundle, e.g. "splitfleet lam=0.01"), so a
 * comparison at equal accuracy can take whichever point `bench rate` found there.
 */
import { imageCodecs } from '../../core/codec/image.js';
import { isImageCodec, isLearnedCodec } from '../../core/codec/ids.js';
import { resolveBundle } from '../../core/model/zoo.js';
import { BACKBONE, DEFAULT_METHODS, type LatencyMethod } from './types.js';

/** The points of a codec by label, or undefined for a codec the backbone has none of. */
async function pointsOf(
  codec: string,
): Promise<readonly { index: number; label: string }[] | undefined> {
  if (isImageCodec(codec)) return imageCodecs.find((c) => c.name === codec)?.points;
  if (!isLearnedCodec(codec)) return undefined;
  const m = (await resolveBundle(BACKBONE, { codec })).manifest;
  return m.kind === 'codec' ? m.codec.points : undefined;
}

/** Every method the names ask for, in the defaults' order then the names'; throws naming
 * a name that matches nothing, with the points its codec has. */
export async function resolveMethods(names: readonly string[]): Promise<LatencyMethod[]> {
  const out = DEFAULT_METHODS.filter(
    (m) => names.includes(m.name) || names.includes(m.codec) || names.includes(m.kind),
  );
  for (const name of names) {
    if (out.some((m) => m.name === name || m.codec === name || m.kind === name)) continue;
    const [codec = '', label, ...rest] = name.trim().split(/\s+/);
    const points = await pointsOf(codec);
    if (!points || label === undefined || rest.length) {
      throw new Error(
        `--methods: ${JSON.stringify(name)} is not a method (${DEFAULT_METHODS.map((m) => m.name).join(', ')}) nor "<codec> <point>"`,
      );
    }
    const p = points.find((x) => x.label === label);
    if (!p) {
      throw new Error(
        `--methods: ${codec} has no point ${label} (has ${points.map((x) => x.label).join(', ')})`,
      );
    }
    out.push({
      name,
      kind: isImageCodec(codec) ? 'offload' : 'split',
      codec,
      point: p.index,
      model: BACKBONE,
    });
  }
  return out;
}
