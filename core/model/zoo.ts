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
 * The zoo is the shipped models/zoo plus the user's zoo folder, SPLITFLEET_ZOO (`--zoo
 * DIR` on every command sets it; child processes inherit it), read at each call. The
 * user's zoo comes first: a bundle name it has hides the shipped bundles of that name
 * (all their versions), so a user can replace a shipped model; a user bundle whose model
 * id and version a shipped bundle of another name already has is broken (frames name
 * models by id).
 *
 * A zoo folder's broken bundles (unreadable or invalid manifest.json) are reported with
 * the reason, never dropped: a model whose bundle is broken is said to be broken, not
 * unknown.
 */
import { readdir, readFile } from 'node:fs/promises';
import { basename, join, resolve, sep } from 'node:path';
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
  /** Bundles of a later zoo folder hidden by a bundle of the same name in an earlier one. */
  hidden: (ZooBundle & { by: string })[];
}

/** The environment variable naming the user's zoo folder. */
export const ZOO_ENV = 'SPLITFLEET_ZOO';

/** The zoo folders every call without its own `zoo` reads, in order: the user's
 * (SPLITFLEET_ZOO, when set), then the shipped one. */
export function zooDirs(): string[] {
  const user = process.env[ZOO_ENV];
  return user && resolve(user) !== resolve(ZOO_DIR) ? [resolve(user), ZOO_DIR] : [ZOO_DIR];
}

/** Every bundle folder in `zoo`: one folder or several in order, earlier ones first on a
 * name (default: zooDirs()). Folders with no manifest.json are not bundles. */
export async function scanZoo(zoo: string | readonly string[] = zooDirs()): Promise<ZooListing> {
  const listing: ZooListing = { bundles: [], broken: [], hidden: [] };
  const folders = typeof zoo === 'string' ? [zoo] : zoo;
  const scanned = await Promise.all(folders.map((dir) => scanFolder(dir)));
  const byName = new Map<string, string>(); // name -> the folder holding it
  const kept: { bundle: ZooBundle; folder: number }[] = [];
  scanned.forEach((one, folder) => {
    listing.broken.push(...one.broken);
    for (const b of one.bundles) {
      const owner = byName.get(b.manifest.name);
      if (owner !== undefined && owner !== folders[folder])
        listing.hidden.push({ ...b, by: owner });
      else kept.push({ bundle: b, folder });
    }
    for (const b of one.bundles)
      if (!byName.has(b.manifest.name)) byName.set(b.manifest.name, folders[folder]!);
  });
  // model ids across folders: the later folder's bundle keeps its id (the shipped zoo's)
  const byId = new Map<string, { bundle: ZooBundle; folder: number }>();
  for (const k of [...kept].sort((x, y) => y.folder - x.folder)) {
    const m = k.bundle.manifest;
    const id = `${m.modelId}@${m.version}`;
    const other = byId.get(id);
    if (other && other.folder !== k.folder && other.bundle.manifest.name !== m.name) {
      listing.broken.push({
        dir: k.bundle.dir,
        reason: `model id ${m.modelId} version ${m.version} is taken by ${other.bundle.manifest.name} (${other.bundle.dir})`,
      });
      continue;
    }
    if (!other) byId.set(id, k);
    listing.bundles.push(k.bundle);
  }
  listing.bundles.sort(
    (a, b) => a.manifest.modelId - b.manifest.modelId || a.manifest.version - b.manifest.version,
  );
  return listing;
}

async function scanFolder(zoo: string): Promise<{ bundles: ZooBundle[]; broken: BrokenBundle[] }> {
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
  /** The zoo folder(s) (default: zooDirs(), the user's and the shipped one). */
  zoo?: string | readonly string[];
  /** Which files to load and verify (default: all). */
  part?: BundlePart;
}

/** The bundle `ref` names (a folder, 'name' or 'name@version'; see the top), loaded and
 * verified. Throws BundleError for an unknown model, saying what the zoo has, and for a
 * broken one, saying why it is broken. */
export async function resolveBundle(ref: string, o: ResolveOptions = {}): Promise<Bundle> {
  if (isBundleFolder(ref)) return loadBundle(ref, o.part);
  const listing = await scanZoo(o.zoo ?? zooDirs());
  const hit = pickBundle(listing.bundles, ref, o.codec);
  if (hit) return loadBundle(hit.dir, o.part);
  const name = ref.split('@')[0]!;
  const bad = listing.broken.find((b) => {
    const folder = basename(b.dir);
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
export function bundleFor(
  model: string,
  codec: string,
  zoo: string | readonly string[] = zooDirs(),
): Promise<Bundle> {
  return resolveBundle(model, { codec, zoo });
}
