/**
 * The one model resolver. A model is named by
 *
 *   'name'           the newest released version of that bundle in the zoo
 *   'name@version'   that version (a staged bundle only when named this way)
 *   a folder         a bundle folder, loaded as it is (any ref with a '/')
 *
 * and with a learned codec (aecnn, frankensplit, ...) and the default model, by the
 * codec: a learned codec is its own bundle, so the newest bundle of that codec serves.
 * The CLI, the agent, the edge's registry and the benches all resolve through here.
 *
 * A zoo folder's broken bundles (unreadable or invalid manifest.json) are reported with
 * the reason, never dropped: a model whose bundle is broken is said to be broken, not
 * unknown.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { isLearnedCodec } from '../codec/ids.js';
import { ZOO_DIR } from '../paths.js';
import { loadBundle, type Bundle, type BundlePart } from './load.js';
import { BundleError, parseManifest, type Manifest } from './manifest.js';

/** The model a device runs unless told otherwise (the fleet schema's default). */
export { DEFAULT_MODEL } from './ref.js';
import { DEFAULT_MODEL } from './ref.js';

/** A bundle folder of a zoo, with its checked manifest (its files are not verified yet). */
export interface ZooBundle {
  dir: string;
  manifest: Manifest;
}

/** A folder of a zoo holding a manifest.json that does not check, and why. */
export interface BrokenBundle {
  dir: string;
  reason: string;
}

export interface ZooListing {
  /** Sorted by model id, then version. */
  bundles: ZooBundle[];
  broken: BrokenBundle[];
}

/** Every bundle folder in `zoo` (folders with no manifest.json are not bundles). */
export async function scanZoo(zoo = ZOO_DIR): Promise<ZooListing> {
  const bundles: ZooBundle[] = [];
  const broken: BrokenBundle[] = [];
  for (const d of await readdir(zoo, { withFileTypes: true }).catch(() => [])) {
    if (!d.isDirectory() || d.name.startsWith('.')) continue;
    const dir = join(zoo, d.name);
    let text: string;
    try {
      text = await readFile(join(dir, 'manifest.json'), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // not a bundle folder
      broken.push({ dir, reason: `manifest.json unreadable: ${(e as Error).message}` });
      continue;
    }
    try {
      bundles.push({ dir, manifest: parseManifest(JSON.parse(text) as unknown, d.name) });
    } catch (e) {
      broken.push({ dir, reason: (e as Error).message });
    }
  }
  bundles.sort(
    (a, b) => a.manifest.modelId - b.manifest.modelId || a.manifest.version - b.manifest.version,
  );
  return { bundles, broken };
}

/** A bundle the rule may pick: released, or staged (served only where named with its
 * version, as a rollout does). */
export interface Candidate {
  manifest: Manifest;
  staged?: boolean;
}

/**
 * The rule: which of `candidates` serves a device's `model` (name or name@version) and
 * `codec` settings. `name@version` is that version, `name` the newest released one; a
 * learned codec with the default model is the newest bundle of that codec. Null when
 * none fits.
 */
export function pickBundle<C extends Candidate>(
  candidates: readonly C[],
  model: string,
  codec = '',
): C | null {
  const [name, ver] = model.split('@');
  const pinned = ver !== undefined;
  const pool = candidates.filter((c) => pinned || !c.staged);
  const hits =
    isLearnedCodec(codec) && model === DEFAULT_MODEL
      ? pool.filter((c) => c.manifest.kind === 'codec' && c.manifest.codec.method === codec)
      : pool.filter(
          (c) => c.manifest.name === name && (!pinned || String(c.manifest.version) === ver),
        );
  let best: C | null = null;
  for (const c of hits) if (!best || c.manifest.version >= best.manifest.version) best = c;
  return best;
}

/** Whether a model ref names a bundle folder rather than a zoo bundle. */
export function isBundleFolder(ref: string): boolean {
  return ref.includes('/') || ref.includes(sep);
}

export interface ResolveOptions {
  /** The device's codec setting: a learned codec picks its bundle (pickBundle). */
  codec?: string;
  /** The zoo folder (default: the shipped models/zoo). */
  zoo?: string;
  /** Which files to load and verify (default: all). */
  part?: BundlePart;
}

/** The bundle `ref` names (a folder, 'name' or 'name@version'; see the top), loaded and
 * verified. Throws BundleError for an unknown model, saying what the zoo has, and for a
 * broken one, saying why it is broken. */
export async function resolveBundle(ref: string, o: ResolveOptions = {}): Promise<Bundle> {
  if (isBundleFolder(ref)) return loadBundle(ref, o.part);
  const zoo = o.zoo ?? ZOO_DIR;
  const listing = await scanZoo(zoo);
  const hit = pickBundle(listing.bundles, ref, o.codec);
  if (hit) return loadBundle(hit.dir, o.part);
  const name = ref.split('@')[0]!;
  const bad = listing.broken.find((b) => {
    const folder = b.dir.slice(zoo.length + 1);
    return folder === name || folder.startsWith(`${name}-v`);
  });
  if (bad)
    throw new BundleError(
      `model ${JSON.stringify(ref)}: bundle ${bad.dir} is broken: ${bad.reason}`,
    );
  const has = listing.bundles.map((b) => `${b.manifest.name}@${b.manifest.version}`).join(', ');
  const broken = listing.broken.length
    ? `; broken: ${listing.broken.map((b) => `${b.dir} (${b.reason})`).join('; ')}`
    : '';
  throw new BundleError(
    `unknown model ${JSON.stringify(ref)}${o.codec ? ` (with codec ${o.codec})` : ''}; the zoo has ${has || 'nothing'}${broken}`,
  );
}

/** resolveBundle(model, {codec, zoo}): a model with a device's codec setting. */
export function bundleFor(model: string, codec: string, zoo = ZOO_DIR): Promise<Bundle> {
  return resolveBundle(model, { codec, zoo });
}
