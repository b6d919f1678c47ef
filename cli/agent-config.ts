/**
 * `splitfleet agent --config FILE`: the agent's flags in a YAML (or JSON) file, one key
 * per flag, named as the flag without its dashes (`latency-goal: 80` is
 * `--latency-goal 80`; `loop: true` is `--loop`). Flags given on the command line win over
 * the file. The keys and their checks come from the agent command's own options, so
 * every flag the command has is a key, validated by the same parser as the flag: the file
 * is checked with a JSON Schema (ajv) built from the options, then each value by its
 * flag's parser; every problem is reported at once as `file:line:col: key: message`, like
 * the fleet file (fleet-config/load.ts).
 */
import { Ajv } from 'ajv';
import type { Command, Option } from 'commander';
import { readFile } from 'node:fs/promises';
import { formatProblem, readYaml, schemaProblem, type FleetProblem } from '../fleet-config/load.js';

export class AgentConfigError extends Error {
  constructor(readonly problems: FleetProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'AgentConfigError';
  }
}

/** Options that are not settings: the file itself, and help. */
const NOT_KEYS = new Set(['config', 'help']);

/** The config key of an option: its long name without dashes (`--no-x`: `x`). */
export function configKey(o: Option): string {
  const long = (o.long ?? '').replace(/^--/, '');
  return o.negate ? long.replace(/^no-/, '') : long;
}

function keyed(options: readonly Option[]): Map<string, Option> {
  const m = new Map<string, Option>();
  for (const o of options) {
    const k = configKey(o);
    if (k && !NOT_KEYS.has(k)) m.set(k, o);
  }
  return m;
}

type JsonSchema = Record<string, unknown>;

/** The JSON Schema of an agent config file with these options (for editors, too). */
export function agentConfigSchema(options: readonly Option[]): JsonSchema {
  const properties: Record<string, JsonSchema> = {};
  for (const [k, o] of keyed(options)) {
    const scalar: JsonSchema = o.argChoices
      ? { enum: o.argChoices }
      : { type: ['string', 'number'] };
    const value: JsonSchema =
      o.isBoolean() || o.negate
        ? { type: 'boolean' }
        : o.variadic
          ? { anyOf: [scalar, { type: 'array', items: scalar, minItems: 1 }] }
          : o.optional
            ? { anyOf: [scalar, { type: 'boolean' }] }
            : scalar;
    properties[k] = { description: o.description, ...value };
  }
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'splitfleet agent config',
    type: 'object',
    additionalProperties: false,
    properties,
  };
}

/**
 * Check a config file's text against the options; returns the values by the options'
 * attribute names (as commander keeps them), parsed by each option's own parser.
 */
export function parseAgentConfig(
  text: string,
  file: string,
  options: readonly Option[],
): Map<string, unknown> {
  const { raw, problems, at } = readYaml(text, file);
  if (problems.length > 0) throw new AgentConfigError(problems);
  if (raw === null || raw === undefined) return new Map();
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    at([], 'an agent config is a mapping of flag names to values, e.g. "device: cam-01"');
    throw new AgentConfigError(problems);
  }
  const validate = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile(
    agentConfigSchema(options),
  );
  if (!validate(raw)) {
    for (const e of validate.errors ?? []) {
      if (e.keyword === 'anyOf') continue; // its branches' errors say more
      const { path, key, message } = schemaProblem(e);
      at(path, message, key);
    }
  }
  const byKey = keyed(options);
  const out = new Map<string, unknown>();
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    const o = byKey.get(k);
    if (!o || problems.some((p) => p.path === k || p.path.startsWith(`${k}.`))) continue;
    try {
      out.set(o.attributeName(), optionValue(o, v));
    } catch (e) {
      at([k], (e as Error).message);
    }
  }
  if (problems.length > 0) {
    problems.sort((a, b) => a.line - b.line || a.col - b.col);
    throw new AgentConfigError(problems);
  }
  return out;
}

/** A file value as the flag would have given it (its parser run on the text). */
function optionValue(o: Option, v: unknown): unknown {
  if (o.negate) return !v ? false : undefined;
  if (typeof v === 'boolean') {
    if (o.isBoolean()) return v;
    if (o.optional) return v ? (o.presetArg ?? true) : undefined;
  }
  const parse = (s: string, prev: unknown): unknown => {
    if (o.argChoices && !o.argChoices.includes(s))
      throw new Error(`${JSON.stringify(s)}: allowed are ${o.argChoices.join(', ')}`);
    if (o.parseArg) return o.parseArg(s, prev);
    if (o.variadic) return [...(Array.isArray(prev) ? (prev as unknown[]) : []), s];
    return s;
  };
  const list = Array.isArray(v) ? v : [v];
  let value: unknown = undefined;
  for (const item of list) value = parse(String(item), value);
  return value;
}

/**
 * Read `file` and set every value it has on `cmd` unless the command line (or the
 * environment) gave it: flags win over the file. Throws AgentConfigError.
 */
export async function applyAgentConfig(cmd: Command, file: string): Promise<void> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new AgentConfigError([
      { file, line: 1, col: 1, path: '', message: `cannot read: ${(e as Error).message}` },
    ]);
  }
  const values = parseAgentConfig(text, file, cmd.options);
  for (const [name, v] of values) {
    if (v === undefined) continue;
    const source = cmd.getOptionValueSource(name);
    if (source === 'cli' || source === 'env') continue;
    cmd.setOptionValueWithSource(name, v, 'config');
  }
}
