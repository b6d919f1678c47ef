/** The command line's argument parsers (commander): one definition of each. */
import { InvalidArgumentError, type Command } from 'commander';
import { BATCH_BOUNDS, type BatchSetting } from '../core/wire/messages.js';

export function int(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`an integer in ${min}..${max}`);
    return n;
  };
}

export function num(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('a non-negative number');
  return n;
}

export function positive(v: string): number {
  const n = Number(v);
  if (!(Number.isFinite(n) && n > 0)) throw new InvalidArgumentError('a positive number');
  return n;
}

/** A share: a number in 0..1. */
export function share(v: string): number {
  const n = Number(v);
  if (!(n >= 0 && n <= 1)) throw new InvalidArgumentError('a number in 0..1');
  return n;
}

/** A comma-separated list. */
export function list(v: string): string[] {
  return v
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
}

/**
 * A command's parsed options (commander's `opts()`, values of unknown type) read into a
 * typed object, each value checked against the type its option gives it: a reader that
 * does not match its option's definition fails at once, naming the option, instead of
 * passing a wrong value on.
 */
export class OptionValues {
  constructor(
    private readonly raw: Readonly<Record<string, unknown>>,
    private readonly command: string,
  ) {}

  private fail(name: string, want: string): never {
    const flag = name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    const got = JSON.stringify(this.raw[name]) ?? 'nothing';
    throw new Error(`${this.command}: --${flag} should be ${want}, not ${got}`);
  }

  optStr(name: string): string | undefined {
    const v = this.raw[name];
    if (v === undefined || typeof v === 'string') return v;
    return this.fail(name, 'a string');
  }

  str(name: string): string {
    return this.optStr(name) ?? this.fail(name, 'a string');
  }

  optNum(name: string): number | undefined {
    const v = this.raw[name];
    if (v === undefined || (typeof v === 'number' && Number.isFinite(v))) return v;
    return this.fail(name, 'a number');
  }

  num(name: string): number {
    return this.optNum(name) ?? this.fail(name, 'a number');
  }

  /** A switch: absent is false (a `--no-x` option is true unless given). */
  flag(name: string): boolean {
    const v = this.raw[name];
    if (v === undefined || typeof v === 'boolean') return v === true;
    return this.fail(name, 'a switch');
  }

  optStrs(name: string): string[] | undefined {
    const v = this.raw[name];
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) return this.fail(name, 'a list of strings');
    const out: string[] = [];
    for (const x of v) out.push(typeof x === 'string' ? x : this.fail(name, 'a list of strings'));
    return out;
  }

  strs(name: string): string[] {
    return this.optStrs(name) ?? this.fail(name, 'a list of strings');
  }

  /** One of `choices` (the option's `.choices()`). */
  choice<const T extends string>(name: string, choices: readonly T[]): T {
    const v = this.raw[name];
    const hit = choices.find((c) => c === v);
    return hit ?? this.fail(name, `one of ${choices.join(', ')}`);
  }
}

/** The options of `cmd`, to read typed. */
export function optionsOf(cmd: { opts(): Record<string, unknown>; name(): string }): OptionValues {
  return new OptionValues(cmd.opts(), `splitfleet ${cmd.name()}`);
}

/** The URL schemes a broker is reached by. */
export const BROKER_SCHEMES = ['mqtt', 'mqtts', 'ws', 'wss'] as const;

/** Why `v` is not a broker URL (mqtt://, mqtts://, ws://, wss:// with a host), or null. */
export function brokerUrlProblem(v: string): string | null {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return `${JSON.stringify(v)} is not a URL`;
  }
  const scheme = u.protocol.slice(0, -1);
  if (!(BROKER_SCHEMES as readonly string[]).includes(scheme))
    return `${JSON.stringify(v)} has scheme ${scheme}://`;
  if (!u.hostname) return `${JSON.stringify(v)} names no host`;
  return null;
}

const SCHEMES_TEXT = `${BROKER_SCHEMES.slice(0, -1)
  .map((s) => `${s}://`)
  .join(', ')} or ${BROKER_SCHEMES.at(-1)}://`;

/**
 * A broker URL, or several comma-separated (a cluster: the next is tried when one is
 * lost): each is checked, the value is kept as given. The one check of every command's
 * `--url`.
 */
export function brokerUrl(v: string): string {
  const urls = list(v);
  if (urls.length === 0) throw new InvalidArgumentError(`a broker URL: ${SCHEMES_TEXT}`);
  for (const u of urls) {
    const why = brokerUrlProblem(u);
    if (why)
      throw new InvalidArgumentError(
        `${why}; a broker URL is ${SCHEMES_TEXT} and a host, e.g. mqtt://edge.local:1883`,
      );
  }
  return v;
}

/** `--batch-frames` and `--batch-delay-ms`: wire v2 batching (the agent, bench latency). */
export function batchOptions(cmd: Command): Command {
  return cmd
    .option(
      '--batch-frames <n>',
      `wire v2: up to n frames per PUBLISH (${BATCH_BOUNDS.minFrames}..${BATCH_BOUNDS.maxFrames}; default: each alone)`,
      int(BATCH_BOUNDS.minFrames, BATCH_BOUNDS.maxFrames),
    )
    .option(
      '--batch-delay-ms <ms>',
      'wire v2 with --batch-frames: the longest a frame waits for the others',
      int(0, BATCH_BOUNDS.maxDelayMs),
      50,
    );
}

/** The batching `batchOptions` asked for (null: each frame alone). */
export function batchOf(o: OptionValues): BatchSetting | null {
  const frames = o.optNum('batchFrames');
  return frames === undefined ? null : { maxFrames: frames, maxDelayMs: o.num('batchDelayMs') };
}
