/**
 * Operator overrides: settings an operator changed on a running edge (the edge's
 * `set-config` op, `splitfleet fleet set`, the dashboard), kept in a JSON file next to
 * the fleet file (`<fleet-file>.overrides.json`, written atomically) and laid on top of
 * the file's own settings: a group's override on the group, a device's on the device. So
 * a device runs defaults <- its group (<- the group's override) <- its own settings
 * (<- its override). The result is checked as a fleet file is (load.ts checkFleet).
 */
import { randomUUID } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
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

/** The most entries an overrides file holds (each a device or a group). */
const MAX_ENTRIES = 100_000;

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
  const out: Record<string, OverrideSettings> = {};
  for (const [id, s] of entries) {
    if (!isValidId(id)) throw new Error(`${name}: invalid id ${JSON.stringify(id.slice(0, 64))}`);
    out[id] = overrideSettings(s, `${name}.${id}`);
  }
  return out;
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

/** Write the overrides atomically: a temporary file beside it, then a rename. */
export async function saveOverrides(file: string, o: Overrides): Promise<void> {
  const tmp = `${file}.${randomUUID().slice(0, 8)}.tmp`;
  try {
    await writeFile(tmp, JSON.stringify(o, null, 2) + '\n');
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** The overrides with one change made (a copy; an entry left empty goes). */
export function withChange(o: Overrides, c: OverrideChange): Overrides {
  const next: Overrides = {
    version: 1,
    groups: { ...o.groups },
    devices: { ...o.devices },
  };
  const [map, id] =
    'device' in c.target ? [next.devices, c.target.device] : [next.groups, c.target.group];
  const entry: Record<string, unknown> = { ...map[id] };
  for (const k of OVERRIDE_KEYS) {
    const v = c.set[k];
    if (v === null) delete entry[k];
    else if (v !== undefined) entry[k] = v;
  }
  if (Object.keys(entry).length === 0) delete map[id];
  else map[id] = entry as OverrideSettings;
  return next;
}

/** The fleet file with the overrides laid on (a copy), and the overrides of devices and
 * groups it does not have (left out). */
export function applyOverrides(
  f: FleetFile,
  o: Overrides,
): { fleet: FleetFile; unknown: string[] } {
  const unknown: string[] = [];
  const groups = { ...f.groups };
  const devices = { ...f.devices };
  for (const [g, s] of Object.entries(o.groups)) {
    if (Object.hasOwn(groups, g)) groups[g] = { ...groups[g], ...s };
    else unknown.push(`group ${g}`);
  }
  for (const [d, s] of Object.entries(o.devices)) {
    if (Object.hasOwn(devices, d)) devices[d] = { ...devices[d], ...s };
    else unknown.push(`device ${d}`);
  }
  return { fleet: { ...f, groups, devices }, unknown };
}

/** The override keys in force for a device: its own and its group's. */
export function overriddenFor(f: FleetFile, o: Overrides, device: string): OverrideKey[] {
  const group = f.devices[device]?.group;
  const keys = new Set<OverrideKey>();
  for (const s of [group ? o.groups[group] : undefined, o.devices[device]])
    for (const k of OVERRIDE_KEYS) if (s?.[k] !== undefined) keys.add(k);
  return [...keys];
}
