/**
 * Read a fleet file: YAML -> migration to the current version -> JSON Schema validation
 * -> checks the schema cannot express (a device's group exists, the codec and the model
 * are known). Every problem is reported with the file, line and column of the value (or
 * key) it is about; all problems at once, not the first.
 */
import { Ajv, type ErrorObject } from 'ajv';
import { readFile } from 'node:fs/promises';
import { isMap, isScalar, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { FLEET_VERSION, fleetSchema, type FleetFile } from './schema.js';
import { migrate } from './migrations.js';

export interface FleetProblem {
  file: string;
  line: number;
  col: number;
  /** Dotted path of the value, e.g. devices.cam-01.fps ('' for the whole file). */
  path: string;
  message: string;
}

export class FleetConfigError extends Error {
  constructor(readonly problems: FleetProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'FleetConfigError';
  }
}

export function formatProblem(p: FleetProblem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.path ? `${p.path}: ` : ''}${p.message}`;
}

/** What the checks beyond the schema know about; leave a list out to skip its check. */
export interface FleetContext {
  codecs?: readonly string[];
  models?: readonly string[];
}

const validateSchema = new Ajv({ allErrors: true, strict: true }).compile(fleetSchema());

export type Path = (string | number)[];

/** Line and column (1-based) of the node at `path`, or of its key, or of the nearest parent
 * (also used by the agent's config file, cli/agent-config.ts). */
export function locate(
  doc: Document,
  lc: LineCounter,
  path: Path,
  key = false,
): { line: number; col: number } {
  for (let n = path.length; n >= 0; n--) {
    const parent =
      n > 0 ? (doc.getIn(path.slice(0, n - 1), true) as Node | undefined) : doc.contents;
    if (n > 0 && key && n === path.length && isMap(parent)) {
      const pair = parent.items.find(
        (it) => isScalar(it.key) && String(it.key.value) === String(path[n - 1]),
      );
      if (pair && isScalar(pair.key) && pair.key.range) return lc.linePos(pair.key.range[0]);
    }
    const node = (n > 0 ? doc.getIn(path.slice(0, n), true) : doc.contents) as
      Node | null | undefined;
    if (node && node.range) return lc.linePos(node.range[0]);
  }
  return { line: 1, col: 1 };
}

export function schemaProblem(e: ErrorObject): { path: Path; key: boolean; message: string } {
  const path: Path = e.instancePath
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties':
      return {
        path: [...path, String(p.additionalProperty)],
        key: true,
        message: `unknown setting ${JSON.stringify(p.additionalProperty)}`,
      };
    case 'propertyNames':
      return {
        path: [...path, String(p.propertyName)],
        key: true,
        message: `invalid id ${JSON.stringify(p.propertyName)}: use 1..64 of [A-Za-z0-9_.-]`,
      };
    case 'required':
      return { path, key: false, message: `missing ${JSON.stringify(p.missingProperty)}` };
    default:
      return { path, key: false, message: e.message ?? e.keyword };
  }
}

/** A YAML (or JSON) config file read with positions: its value (undefined when the YAML
 * itself is broken), its syntax problems, and `at` to report a problem at a path with its
 * line and column. The fleet file and the agent's config file both read this way. */
export function readYaml(
  text: string,
  file: string,
): {
  raw: unknown;
  problems: FleetProblem[];
  at: (path: Path, message: string, key?: boolean) => void;
} {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const problems: FleetProblem[] = [];
  const at = (path: Path, message: string, key = false) =>
    problems.push({ file, ...locate(doc, lc, path, key), path: path.join('.'), message });
  for (const e of doc.errors) {
    const pos = lc.linePos(e.pos[0]);
    problems.push({ file, ...pos, path: '', message: `YAML: ${e.message.split('\n')[0]}` });
  }
  const raw: unknown = problems.length > 0 ? undefined : doc.toJS({ maxAliasCount: 100 });
  return { raw, problems, at };
}

/** Parse and check a fleet file's text; throws FleetConfigError with every problem. */
export function parseFleet(text: string, file = '<fleet>', ctx: FleetContext = {}): FleetFile {
  const { raw, problems, at } = readYaml(text, file);
  if (problems.length > 0) throw new FleetConfigError(problems);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    at([], 'a fleet file is a mapping (version, fleet, defaults, groups, devices)');
    throw new FleetConfigError(problems);
  }
  const version = (raw as { version?: unknown }).version;
  if (typeof version === 'number' && version > FLEET_VERSION) {
    at(['version'], `version ${version} is newer than this splitfleet reads (${FLEET_VERSION})`);
    throw new FleetConfigError(problems);
  }
  const data = migrate(raw as Record<string, unknown>);
  if (!validateSchema(data)) {
    for (const e of validateSchema.errors ?? []) {
      // a failed propertyNames also reports its inner pattern error: keep one
      if ((e as { propertyName?: string }).propertyName !== undefined) continue;
      const { path, key, message } = schemaProblem(e);
      at(path, message, key);
    }
  }
  const fleet = data as unknown as FleetFile;
  const obj = (v: unknown): Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  fleet.defaults = obj(fleet.defaults) as unknown as FleetFile['defaults'];
  fleet.groups = obj(fleet.groups) as FleetFile['groups'];
  fleet.devices = obj(fleet.devices) as FleetFile['devices'];
  // checks the schema cannot express (also when it failed: all problems at once)
  const sections: [Path, Record<string, unknown>][] = [
    [['defaults'], fleet.defaults as unknown as Record<string, unknown>],
    ...Object.entries(fleet.groups).map(([g, s]): [Path, Record<string, unknown>] => [
      ['groups', g],
      obj(s),
    ]),
    ...Object.entries(fleet.devices).map(([d, s]): [Path, Record<string, unknown>] => [
      ['devices', d],
      obj(s),
    ]),
  ];
  for (const [path, s] of sections) {
    if (typeof s.group === 'string' && !(s.group in fleet.groups)) {
      const known = Object.keys(fleet.groups);
      at(
        [...path, 'group'],
        `unknown group ${JSON.stringify(s.group)}; groups: ${known.join(', ') || 'none'}`,
      );
    }
    if (ctx.codecs && typeof s.codec === 'string' && !ctx.codecs.includes(s.codec)) {
      at(
        [...path, 'codec'],
        `unknown codec ${JSON.stringify(s.codec)}; known: ${ctx.codecs.join(', ')}`,
      );
    }
    if (
      ctx.models &&
      typeof s.model === 'string' &&
      !ctx.models.includes(s.model) &&
      !ctx.models.includes(s.model.split('@')[0]!)
    ) {
      at(
        [...path, 'model'],
        `unknown model ${JSON.stringify(s.model)}; the zoo has ${ctx.models.join(', ')}`,
      );
    }
  }
  if (problems.length > 0) {
    problems.sort((a, b) => a.line - b.line || a.col - b.col);
    throw new FleetConfigError(problems);
  }
  return fleet;
}

export async function loadFleet(file: string, ctx: FleetContext = {}): Promise<FleetFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new FleetConfigError([
      { file, line: 1, col: 1, path: '', message: `cannot read: ${(e as Error).message}` },
    ]);
  }
  return parseFleet(text, file, ctx);
}
