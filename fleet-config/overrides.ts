/**
 * Operator overrides: settings an operator changed on a running edge (the edge's
 * `set-config` op, `splitfleet fleet set`, the dashboard), kept in a JSON file next to
 * the fleet file (`<fleet-file>.overrides.json`, written atomically) and laid on top of
 * the file's own settings: a group's override on the group, a device's on the device. So
 * a device runs defaults <- its group (<- the group's override) <- its own settings
 * (<- its override). The result is checked as a fleet file is (load.ts checkFleet).
 *
 * Ids are own keys whatever they spell (`__proto__` is a valid id), and a change never
 * makes a file of more entries than a load takes.
 */
import { readFile } from 'node:fs/promises';
import { writeSecretFile } from '../core/util/secret-file.js';
import { isValidId } from '../core/wire/topics.js';
import type { FleetFile } from './schema.js';

/** The settings an operator may change. */
export const OVERRIDE_KEYS = ['codec', 'point', 'fps'] as const;
export type OverrideKey = (typeof OVERRIDE_KEYS)[number];
export type OverrideSettings = Partial<{ codec: string; point: number; fps: number }>;

export interface Overrides {
  version: 1;
  groups: Record<string, OverrideSettings>;
  devices: Record<string, OverrideSettings>;
}

/** One change: a device's or a group's settings; null removes that override. */
export interface OverrideChange {
  target: { device: string } | { group: string };
  set: Partial<{ codec: string | null; point: number | null; fps: number | null }>;
}

/** The most entries each section of an overrides file holds (devices, groups). */
export const MAX_ENTRIES = 100_000;

/** The entry of `id` in a section, if it has its own. */
const entryOf = (
  map: Record<string, OverrideSettings>,
  id: string,
): OverrideSettings | undefined => (Object.hasOwn(map, id) ? map[id] : undefined);

export function emptyOverrides(): Overrides {
  return { version: 1, groups: {}, devices: {} };
}

/** The file's path beside a fleet file. */
export function overridesFileOf(fleetFile: string): string {
  return `${fleetFile}.overrides.json`;
}

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** The override settings of `v`: only the override keys, each of its type (codec a name,
 * point an integer, fps a number; with `nulls`, null too: remove that override). Their
 * ranges are the fleet file's checks. Throws naming the bad field. */
export function overrideSettings(v: unknown, where: string, nulls: true): OverrideChange['set'];
export function overrideSettings(v: unknown, where: string, nulls?: false): OverrideSettings;
export function overrideSettings(v: unknown, where: string, nulls = false): OverrideChange['set'] {
  if (!isObj(v)) throw new Error(`${where}: not an object`);
  const out: OverrideChange['set'] = {};
  for (const [k, x] of Object.entries(v)) {
    const gone = nulls && x === null;
    if (k === 'codec' && (gone || (typeof x === 'string' && x.length <= 32)))
      out.codec = x as string | null;
    else if (k === 'point' && (gone || (typeof x === 'number' && Number.isInteger(x))))
      out.point = x as number | null;
    else if (k === 'fps' && (gone || (typeof x === 'number' && Number.isFinite(x))))
      out.fps = x as number | null;
    else if (!(OVERRIDE_KEYS as readonly string[]).includes(k))
      throw new Error(
        `${where}: unknown setting ${JSON.stringify(k.slice(0, 64))}; settings: ${OVERRIDE_KEYS.join(', ')}`,
      );
    else
      throw new Error(
        `${where}.${k}: not ${k === 'codec' ? 'a codec name' : k === 'point' ? 'an integer' : 'a number'}${nulls ? ' or null' : ''}`,
      );
  }
  return out;
}

function section(v: unknown, name: string): Record<string, OverrideSettings> {
  if (v === undefined) return {};
  if (!isObj(v)) throw new Error(`${name}: not an object`);
  const entries = Object.entries(v);
  if (entries.length > MAX_ENTRIES) throw new Error(`${name}: more than ${MAX_ENTRIES} entries`);
  for (const [id] of entries)
    if (!isValidId(id)) throw new Error(`${name}: invalid id ${JSON.stringify(id.slice(0, 64))}`);
  // fromEntries defines own keys: an entry `__proto__` stays an entry
  return Object.fromEntries(entries.map(([id, s]) => [id, overrideSettings(s, `${name}.${id}`)]));
}

/** Parse an overrides file's text; throws naming the file and the bad field. */
export function parseOverrides(text: string, file: string): Overrides {
  try {
    const v: unknown = JSON.parse(text);
    if (!isObj(v)) throw new Error('not an object');
    if (v.version !== 1) throw new Error(`version ${JSON.stringify(v.version)} (this reads 1)`);
    for (const k of Object.keys(v))
      if (!['version', 'groups', 'devices'].includes(k))
        throw new Error(`unknown field ${JSON.stringify(k.slice(0, 64))}`);
    return {
      version: 1,
      groups: section(v.groups, 'groups'),
      devices: section(v.devices, 'devices'),
    };
  } catch (e) {
    throw new Error(`overrides file ${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** The overrides in `file`; none when it does not exist. */
export async function loadOverrides(file: string): Promise<Overrides> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return emptyOverrides();
    throw new Error(`overrides file ${file}: ${(e as Error).message}`);
  }
  return parseOverrides(text, file);
}

/** Write the overrides whole: a new file beside it (mode 0600), flushed to disk, then
 * renamed over it, so a crash or power loss leaves the old file or the new one, never a
 * torn one the next start refuses. */
export async function saveOverrides(file: string, o: Overrides): Promise<void> {
  await writeSecretFile(file, JSON.stringify(o, null, 2) + '\n');
}

/** The overrides with one change made (a copy; an entry left empty goes). Throws when a
 * new entry would make a section larger than a load takes (MAX_ENTRIES). */
export function withChange(o: Overrides, c: OverrideChange): Overrides {
  const [section, id, what] =
    'device' in c.target
      ? (['devices', c.target.device, 'device'] as const)
      : (['groups', c.target.group, 'group'] as const);
  const entry: Record<string, unknown> = { ...entryOf(o[section], id) };
  for (const k of OVERRIDE_KEYS) {
    const v = c.set[k];
    if (v === null) delete entry[k];
    else if (v !== undefined) entry[k] = v;
  }
  const others = Object.entries(o[section]).filter(([k]) => k !== id);
  const kept = Object.keys(entry).length > 0;
  if (kept && others.length >= MAX_ENTRIES)
    throw new Error(
      `the overrides hold ${MAX_ENTRIES} ${what}s already: remove some (set them to null) first`,
    );
  const map = Object.fromEntries(
    kept ? [...others, [id, entry as OverrideSettings]] : others,
  ) as Record<string, OverrideSettings>;
  return { version: 1, groups: o.groups, devices: o.devices, [section]: map };
}

/** The fleet file with the overrides laid on (a copy), and the overrides of devices and
 * groups it does not have (left out). */
export function applyOverrides(
  f: FleetFile,
  o: Overrides,
): { fleet: FleetFile; unknown: string[] } {
  const unknown: string[] = [];
  for (const g of Object.keys(o.groups))
    if (!Object.hasOwn(f.groups, g)) unknown.push(`group ${g}`);
  for (const d of Object.keys(o.devices))
    if (!Object.hasOwn(f.devices, d)) unknown.push(`device ${d}`);
  // own keys throughout (fromEntries): an id `__proto__` is a device like another
  const laid = <T>(file: Record<string, T>, over: Record<string, OverrideSettings>) =>
    Object.fromEntries(
      Object.entries(file).map(([id, s]) => [id, { ...s, ...entryOf(over, id) }]),
    ) as Record<string, T>;
  return {
    fleet: { ...f, groups: laid(f.groups, o.groups), devices: laid(f.devices, o.devices) },
    unknown,
  };
}

/** The override keys in force for a device: its own and its group's. */
export function overriddenFor(f: FleetFile, o: Overrides, device: string): OverrideKey[] {
  const group = Object.hasOwn(f.devices, device) ? f.devices[device]?.group : undefined;
  const keys = new Set<OverrideKey>();
  for (const s of [group ? entryOf(o.groups, group) : undefined, entryOf(o.devices, device)])
    for (const k of OVERRIDE_KEYS) if (s?.[k] !== undefined) keys.add(k);
  return [...keys];
}
