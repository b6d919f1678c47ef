/**
 * Read a fleet file: YAML -> migration to the current version -> JSON Schema validation
 * -> checks the schema cannot express (a device's group exists, the codec and the model
 * are known, and with bundles to check against: each device's model, codec and point
 * make a split plan, plans.ts). Every problem is reported with the file, line and column
 * of the value (or key) it is about; all problems at once, not the first.
 */
import { Ajv, type ErrorObject } from 'ajv';
import { readFile } from 'node:fs/promises';
import {
  isMap,
  isNode,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  visit,
  type Document,
  type Node,
  type Pair,
  type YAMLMap,
} from 'yaml';
import { FLEET_VERSION, edgeSettings, fleetSchema, type FleetFile } from './schema.js';
import { migrate } from './migrations.js';
import { listed, planProblems, type PlanSources } from './plans.js';

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

/** `file:line:col: path: message` (a problem of no file position, line 0: `file: path: ...`). */
export function formatProblem(p: FleetProblem): string {
  const where = p.line > 0 ? `${p.file}:${p.line}:${p.col}` : p.file;
  return `${where}: ${p.path ? `${p.path}: ` : ''}${p.message}`;
}

/** What the checks beyond the schema know about; leave a list out to skip its check. */
export interface FleetContext {
  codecs?: readonly string[];
  models?: readonly string[];
  /** Bundles to check each device's model, codec and point against (plans.ts). */
  plans?: PlanSources;
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
  return locator(doc, lc)(path, key);
}

/** `locate` for many paths of one document: each map's keys are indexed once, so finding
 * the position of every device costs time in proportion to the devices, not its square. */
export function locator(
  doc: Document,
  lc: LineCounter,
): (path: Path, key?: boolean) => { line: number; col: number } {
  const indexes = new WeakMap<YAMLMap, Map<string, Pair>>();
  const pairOf = (map: YAMLMap, k: string | number): Pair | undefined => {
    let index = indexes.get(map);
    if (!index) {
      index = new Map();
      for (const pair of map.items) {
        const name = isScalar(pair.key) ? String(pair.key.value) : undefined;
        if (name !== undefined && !index.has(name)) index.set(name, pair);
      }
      indexes.set(map, index);
    }
    return index.get(String(k));
  };
  return (path, key = false) => {
    // walk down as far as the path exists; the deepest node found (or the key asked for)
    let node: unknown = doc.contents;
    let best: Node | null = isNode(node) && node.range ? node : null;
    for (let i = 0; i < path.length; i++) {
      const k = path[i]!;
      if (isMap(node)) {
        const pair = pairOf(node, k);
        if (!pair) break;
        if (key && i === path.length - 1 && isScalar(pair.key) && pair.key.range)
          return lc.linePos(pair.key.range[0]);
        node = pair.value;
      } else if (isSeq(node) && /^[0-9]+$/.test(String(k))) {
        node = node.items[Number(k)];
      } else break;
      if (!isNode(node)) break;
      if (node.range) best = node;
    }
    return best?.range ? lc.linePos(best.range[0]) : { line: 1, col: 1 };
  };
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
  // keys are checked for repeats below, once per map (the parser's own check scans every
  // earlier key of a map for each key: quadratic in the devices)
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: false });
  const problems: FleetProblem[] = [];
  const where = locator(doc, lc);
  const at = (path: Path, message: string, key = false) =>
    problems.push({ file, ...where(path, key), path: path.join('.'), message });
  for (const e of doc.errors) {
    const pos = lc.linePos(e.pos[0]);
    problems.push({ file, ...pos, path: '', message: `YAML: ${e.message.split('\n')[0]}` });
  }
  visit(doc, {
    Map(_, map) {
      const seen = new Set<unknown>();
      for (const { key } of map.items) {
        if (!isScalar(key)) continue;
        if (seen.has(key.value)) {
          const pos = key.range ? lc.linePos(key.range[0]) : { line: 1, col: 1 };
          problems.push({ file, ...pos, path: '', message: 'YAML: Map keys must be unique' });
        }
        seen.add(key.value);
      }
    },
  });
  const raw: unknown = problems.length > 0 ? undefined : doc.toJS({ maxAliasCount: 100 });
  return { raw, problems, at };
}

/** Parse and check a fleet file's text; throws FleetConfigError with every problem. */
export function parseFleet(text: string, file = '<fleet>', ctx: FleetContext = {}): FleetFile {
  const { raw, problems, at } = readYaml(text, file);
  if (problems.length > 0) throw new FleetConfigError(problems);
  return checked(raw, problems, at, ctx);
}

/** Check a fleet file that is data already (a fleet file with operator overrides on
 * top): the same checks as parseFleet; its problems name `source` and no line. */
export function checkFleet(data: unknown, source: string, ctx: FleetContext = {}): FleetFile {
  const problems: FleetProblem[] = [];
  const at = (path: Path, message: string) =>
    problems.push({ file: source, line: 0, col: 0, path: path.join('.'), message });
  return checked(structuredClone(data), problems, at, ctx);
}

function checked(
  raw: unknown,
  problems: FleetProblem[],
  at: (path: Path, message: string, key?: boolean) => void,
  ctx: FleetContext,
): FleetFile {
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
  const valid = validateSchema(data);
  if (!valid) {
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
  fleet.edge = edgeSettings(fleet.edge);
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
  const groups = listed(Object.keys(fleet.groups));
  const codecs = ctx.codecs && new Set(ctx.codecs);
  const models = ctx.models && new Set(ctx.models);
  const codecList = ctx.codecs && listed(ctx.codecs);
  const modelList = ctx.models && listed(ctx.models);
  let named = true; // every group, codec and model named is known
  for (const [path, s] of sections) {
    if (typeof s.group === 'string' && !Object.hasOwn(fleet.groups, s.group)) {
      at([...path, 'group'], `unknown group ${JSON.stringify(s.group)}; groups: ${groups}`);
      named = false;
    }
    if (codecs && typeof s.codec === 'string' && !codecs.has(s.codec)) {
      at([...path, 'codec'], `unknown codec ${JSON.stringify(s.codec)}; known: ${codecList}`);
      named = false;
    }
    if (
      models &&
      typeof s.model === 'string' &&
      !models.has(s.model) &&
      !models.has(s.model.split('@')[0]!)
    ) {
      at([...path, 'model'], `unknown model ${JSON.stringify(s.model)}; the zoo has ${modelList}`);
      named = false;
    }
  }
  // the plans, once the settings are well-formed and every name is known
  if (ctx.plans && valid && named) {
    for (const p of planProblems(fleet, ctx.plans)) at(p.path, p.message);
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
