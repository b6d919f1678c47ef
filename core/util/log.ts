/**
 * The project logger (pino). LOG_LEVEL sets the level (`debug`, `info`, `warn`, `error`,
 * `silent`); logs go to stderr, or, where SPLITFLEET_LOG_FILE names a file, are appended
 * there (the test suite keeps its logs in one file, printed when a test fails).
 */
import { pino, type Logger } from 'pino';

export type { Logger };

const file = process.env.SPLITFLEET_LOG_FILE;
export const log: Logger = pino(
  { level: process.env.LOG_LEVEL ?? 'info', base: undefined },
  pino.destination(
    file ? { dest: file, sync: true, mkdir: true, append: true } : { dest: 2, sync: true },
  ),
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
