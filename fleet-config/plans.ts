/**
 * The check of a fleet file against model bundles: every device's effective model and
 * codec must name a bundle (the zoo's one rule, core/model/zoo.ts pickBundle), and its
 * codec and point must make a split plan of that bundle (core/split/plan.ts splitPlan:
 * a learned codec only with its own bundle, a point the codec has). Each problem is
 * reported where the setting is written (the device, its group or the defaults), once
 * for every device it concerns.
 */
import { isLearnedCodec } from '../core/codec/ids.js';
import type { FeatureCodec } from '../core/codec/types.js';
import { loadBundle } from '../core/model/load.js';
import type { Manifest } from '../core/model/manifest.js';
import { DEFAULT_MODEL } from '../core/model/ref.js';
import { pickBundle } from '../core/model/zoo.js';
import { splitPlan } from '../core/split/plan.js';
import { effectiveConfig } from './effective.js';
import type { DeviceSettings, FleetFile } from './schema.js';

/** A bundle a fleet file may name (a loaded Bundle is one). */
export interface PlanBundle {
  manifest: Manifest;
  codec: FeatureCodec | null;
  /** Served only where named with its version (a registry's staged bundle). */
  staged?: boolean;
}

/** What the plans are checked against. */
export interface PlanSources {
  bundles: readonly PlanBundle[];
  /** Bundles that could not be loaded, and why (named when no bundle fits). */
  broken?: readonly { dir: string; reason: string }[];
  /** Who holds the bundles, for messages: 'the zoo' (default), 'this edge'. */
  where?: string;
}

export interface PlanProblem {
  path: (string | number)[];
  message: string;
}

/** Names for a message: the first `n`, then how many more. */
export function listed(names: readonly string[], n = 20): string {
  if (names.length === 0) return 'none';
  const shown = names.slice(0, n).join(', ');
  return names.length > n ? `${shown} and ${names.length - n} more` : shown;
}

/** The path of the layer that sets `key` for `device` (its own, its group's, the
 * defaults), or the device itself where only the schema's default applies. */
function ownerOf(f: FleetFile, device: string, key: keyof DeviceSettings): string[] {
  const own = f.devices[device] as Record<string, unknown> | undefined;
  if (own?.[key] !== undefined) return ['devices', device, key];
  const group = typeof own?.group === 'string' ? own.group : null;
  const g = group ? (f.groups[group] as Record<string, unknown> | undefined) : undefined;
  if (group && g?.[key] !== undefined) return ['groups', group, key];
  if ((f.defaults as unknown as Record<string, unknown>)[key] !== undefined)
    return ['defaults', key];
  return ['devices', device];
}

/** What is wrong with (model, codec, point) against the bundles, or null. */
function planProblem(
  s: PlanSources,
  model: string,
  codec: string,
  point: number,
): { key: keyof DeviceSettings; message: string } | null {
  const bundle = pickBundle(s.bundles, model, codec);
  if (!bundle) {
    const has = listed(
      s.bundles.map(
        (b) => `${b.manifest.name}@${b.manifest.version}${b.staged ? ' (staged)' : ''}`,
      ),
    );
    const broken = s.broken?.length
      ? `; broken: ${s.broken.map((b) => `${b.dir} (${b.reason})`).join('; ')}`
      : '';
    const byCodec = isLearnedCodec(codec) && model === DEFAULT_MODEL;
    return {
      key: byCodec ? 'codec' : 'model',
      message: `no bundle serves model ${JSON.stringify(model)} with codec ${JSON.stringify(codec)}; ${s.where ?? 'the zoo'} has ${has}${broken}`,
    };
  }
  try {
    splitPlan(bundle, codec, point);
    return null;
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    const ref = `${bundle.manifest.name}@${bundle.manifest.version}`;
    return {
      key: /operating point/.test(why) ? 'point' : 'codec',
      message: `${why} (model ${ref})`,
    };
  }
}

/** Every problem of the fleet's devices' plans, one per place and message. Devices with
 * the same settings are checked once. */
export function planProblems(f: FleetFile, s: PlanSources): PlanProblem[] {
  const verdicts = new Map<string, ReturnType<typeof planProblem>>();
  const found = new Map<string, { path: string[]; message: string; devices: string[] }>();
  for (const device of Object.keys(f.devices)) {
    let c: DeviceSettings;
    try {
      c = effectiveConfig(f, device);
    } catch {
      continue; // a broken section: the schema's problems say why
    }
    if (typeof c.model !== 'string' || typeof c.codec !== 'string') continue;
    if (typeof c.point !== 'number') continue;
    const key = JSON.stringify([c.model, c.codec, c.point]);
    if (!verdicts.has(key)) verdicts.set(key, planProblem(s, c.model, c.codec, c.point));
    const p = verdicts.get(key);
    if (!p) continue;
    const path = ownerOf(f, device, p.key);
    const at = JSON.stringify([path, p.message]);
    const entry = found.get(at) ?? { path, message: p.message, devices: [] };
    entry.devices.push(device);
    found.set(at, entry);
  }
  return [...found.values()].map(({ path, message, devices }) => ({
    path,
    message:
      path[0] === 'devices' && devices.length === 1
        ? message
        : `${message} (device${devices.length > 1 ? 's' : ''} ${listed(devices, 10)})`,
  }));
}

/** A bundle folder to check plans against. */
export interface PlanBundleDir {
  dir: string;
  staged?: boolean;
}

/** Load the folders' manifests and codecs (the device part: a learned codec's tables)
 * to check plans against; a folder that does not load is listed as broken, with why. */
export async function loadPlanSources(
  dirs: readonly PlanBundleDir[],
  where?: string,
): Promise<PlanSources> {
  const bundles: PlanBundle[] = [];
  const broken: { dir: string; reason: string }[] = [];
  for (const { dir, staged } of dirs) {
    try {
      const b = await loadBundle(dir, 'device');
      bundles.push({ manifest: b.manifest, codec: b.codec, ...(staged ? { staged } : {}) });
    } catch (e) {
      broken.push({ dir, reason: e instanceof Error ? e.message : String(e) });
    }
  }
  return { bundles, broken, ...(where ? { where } : {}) };
}
