/**
 * The project logger (pino). LOG_LEVEL sets the level (`debug`, `info`, `warn`, `error`,
 * `silent`); logs go to stderr, or, where SPLITFLEET_LOG_FILE names a file, are appended
 * there as JSON (the test suite keeps its logs in one file, printed when a test fails).
 *
 * On stderr a line is `pretty` (local time, level name, message, then the fields as
 * key=value) when stderr is a terminal, and `json` (one object per line, ISO time, level
 * name) when it is not; SPLITFLEET_LOG_FORMAT (`splitfleet --log-format`) chooses either.
 * Colours only on a terminal, and never with NO_COLOR set.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export const LOG_FORMATS = ['pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

interface Terminal {
  isTTY?: boolean;
}

/** The format of log lines written to `stream` (read at each line: the CLI sets the
 * variable after this module loads). */
export function logFormat(
  env: NodeJS.ProcessEnv = process.env,
  stream: Terminal = process.stderr,
): LogFormat {
  const f = env.SPLITFLEET_LOG_FORMAT;
  if (f === 'pretty' || f === 'json') return f;
  return stream.isTTY ? 'pretty' : 'json';
}

/** Whether to colour what goes to `stream`: a terminal, and NO_COLOR unset or empty. */
export function useColour(
  env: NodeJS.ProcessEnv = process.env,
  stream: Terminal = process.stderr,
): boolean {
  return Boolean(stream.isTTY) && !env.NO_COLOR;
}

const LEVEL_NAMES: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};
const LEVEL_COLOURS: Record<string, string> = {
  trace: '90',
  debug: '90',
  info: '32',
  warn: '33',
  error: '31',
  fatal: '35',
};
const paint = (on: boolean, code: string, s: string) => (on ? `\x1b[${code}m${s}\x1b[0m` : s);

function prettyValue(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(+v.toPrecision(4));
  if (typeof v === 'string') return /^[\w.:/@+-]+$/.test(v) ? v : JSON.stringify(v);
  if (v && typeof v === 'object' && 'message' in v && typeof v.message === 'string')
    return JSON.stringify(v.message); // a serialized error: its message (the stack follows)
  return JSON.stringify(v) ?? String(v);
}

/**
 * One JSON log line as a terminal line: `12:04:05.123 WARN  message key=value ...`, the
 * stack of an error below it. A line that is not a log object passes through as it is.
 */
export function prettyLine(json: string, colour = false): string {
  let o: unknown;
  try {
    o = JSON.parse(json);
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  if (!o || typeof o !== 'object' || Array.isArray(o)) return `${json.trimEnd()}\n`;
  const { level, time, msg, ...fields } = o as Record<string, unknown>;
  const name =
    typeof level === 'string'
      ? level.toUpperCase()
      : (LEVEL_NAMES[typeof level === 'number' ? level : 30] ?? 'INFO');
  const t = typeof time === 'string' || typeof time === 'number' ? new Date(time) : new Date();
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  const clock = `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}.${pad(t.getMilliseconds(), 3)}`;
  const kv = Object.entries(fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${paint(colour, '2', `${k}=`)}${prettyValue(v)}`)
    .join(' ');
  const stack =
    fields.err && typeof fields.err === 'object' && 'stack' in fields.err
      ? String(fields.err.stack)
          .split('\n')
          .slice(1)
          .map((l) => `    ${l.trim()}\n`)
          .join('')
      : '';
  return (
    `${paint(colour, '2', clock)} ${paint(colour, LEVEL_COLOURS[name.toLowerCase()] ?? '0', name.padEnd(5))} ` +
    `${typeof msg === 'string' ? msg : ''}${kv ? ` ${kv}` : ''}\n${stack}`
  );
}

/** Where the log goes on stderr: each line as logFormat() says, written at once. */
const stderrSink = {
  write(line: string): void {
    const text = logFormat() === 'pretty' ? prettyLine(line, useColour()) : line;
    try {
      process.stderr.write(text);
    } catch {
      // a closed stderr (EPIPE) never stops the program
    }
  },
};

const file = process.env.SPLITFLEET_LOG_FILE;
export const log: Logger = pino(
  {
    level: process.env.LOG_LEVEL ?? 'info',
    base: undefined,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  },
  file ? pino.destination({ dest: file, sync: true, mkdir: true, append: true }) : stderrSink,
);

type Level = 'warn' | 'info' | 'error';

/**
 * A logger that writes a given key at most once per `windowMs` and counts what it held
 * back: a flood of one kind of refusal or error (one client, one reason) costs one line
 * per window, whatever the sender does. The next line for a key carries `suppressed`, the
 * number of lines dropped since the last one. Keys are kept for at most `maxKeys` (oldest
 * first out), so untrusted keys cannot grow it without bound.
 */
export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly windowMs = 60_000,
    private readonly maxKeys = 10_000,
    private readonly now: () => number = Date.now,
    private readonly out: Logger = log,
  ) {}

  /** Log `msg` with `fields` unless `key` was logged within the window; true if written. */
  write(level: Level, key: string, fields: Record<string, unknown>, msg: string): boolean {
    const t = this.now();
    const seen = this.last.get(key);
    if (seen && t - seen.at < this.windowMs) {
      seen.suppressed++;
      return false;
    }
    if (seen)
      this.last.delete(key); // re-insert: the map stays in order of last write
    else if (this.last.size >= this.maxKeys) {
      const oldest = this.last.keys().next().value;
      if (oldest !== undefined) this.last.delete(oldest);
    }
    this.last.set(key, { at: t, suppressed: 0 });
    const extra = seen?.suppressed ? { suppressed: seen.suppressed } : {};
    this.out[level]({ ...fields, ...extra }, msg);
    return true;
  }

  warn(key: string, fields: Record<string, unknown>, msg: string): boolean {
    return this.write('warn', key, fields, msg);
  }
}

/** One shared limiter for refusals and handler errors (one line per key per minute). */
export const limitedLog = new RateLimitedLog();

/**
 * Run a promise in the background, observed: a rejection is logged (once a minute per
 * `what`), never left unhandled. The one way the project starts work it does not await.
 */
export function background(p: Promise<unknown>, what: string): void {
  p.catch((e: unknown) =>
    limitedLog.warn(`background:${what}`, { err: String(e) }, `${what} failed`),
  );
}
