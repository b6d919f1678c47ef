/**
 * Admission of password checks for the broker's logins (auth.ts): a few scrypt checks at
 * a time, address by address, with a backoff for addresses that keep failing.
 */

export interface LoginLimits {
  /** Password checks (scrypt, ~16 MiB and tens of ms each) running at once. */
  concurrent: number;
  /** Logins waiting for a check, in all; past that, CONNACK 3 (server unavailable). */
  queue: number;
  /** Logins from one address waiting at once; past that, CONNACK 3. */
  perAddress: number;
  /** Failures from one address within a minute that start a backoff (0: never). */
  failures: number;
  /** The first backoff; each one after doubles it, up to 15 minutes. */
  backoffMs: number;
}
const LOGIN_DEFAULTS: LoginLimits = {
  concurrent: 4,
  queue: 256,
  perAddress: 32,
  failures: 5,
  backoffMs: 10_000,
};

/**
 * Admission of password checks: at most `concurrent` at once; the logins waiting are
 * served one address after the other, so a flood from one address delays a login from
 * another by a check or two, not by the flood. After `failures` failed logins within a
 * minute, an address is refused at once (no check) for `backoffMs`, doubled at each new
 * backoff. Devices behind one NAT address share these limits.
 */
export class LoginGate {
  private running = 0;
  private queued = 0;
  /** Waiting logins per address, addresses in the order they are served. */
  private readonly waiting = new Map<string, (() => void)[]>();
  private readonly failed = new Map<string, { times: number[]; until: number; next: number }>();
  private readonly o: LoginLimits;
  /** Password checks started so far. */
  private started = 0;
  /** The last logins checked: their address and how many checks of others started while
   * they waited (at most 64 kept). */
  readonly recent: { from: string; waitedChecks: number }[] = [];

  constructor(limits: Partial<LoginLimits> = {}) {
    this.o = { ...LOGIN_DEFAULTS, ...limits };
  }

  /** Run `check` (true: right password) for a login from `from`, or say why not. */
  async run(from: string, check: () => Promise<boolean>): Promise<boolean | string> {
    const mark = this.started;
    const q = this.waiting.get(from) ?? [];
    const busy = this.running >= this.o.concurrent;
    const why =
      this.backedOff(from) ??
      (busy && q.length >= this.o.perAddress
        ? `over ${this.o.perAddress} logins waiting from ${from}`
        : null) ??
      (busy && this.queued >= this.o.queue ? 'too many logins waiting' : null);
    if (why) return why;
    if (!busy) this.running++;
    else {
      this.queued++;
      if (!this.waiting.has(from)) this.waiting.set(from, q);
      await new Promise<void>((r) => q.push(r));
    }
    try {
      // failures from this address may have come in while this one waited
      const late = this.backedOff(from);
      if (late) return late;
      // how many checks of others started while this login waited (its fairness)
      this.recent.push({ from, waitedChecks: this.started - mark });
      if (this.recent.length > 64) this.recent.shift();
      this.started++;
      const ok = await check();
      if (!ok) this.fail(from);
      return ok;
    } finally {
      this.release();
    }
  }

  /** Hand the slot to the first waiting login of the next address, which goes last. */
  private release(): void {
    const first = this.waiting.entries().next();
    if (first.done) {
      this.running--;
      return;
    }
    const [from, q] = first.value;
    const next = q.shift();
    this.waiting.delete(from);
    if (q.length) this.waiting.set(from, q);
    this.queued--;
    next?.();
  }

  private backedOff(from: string): string | null {
    const f = this.failed.get(from);
    const ms = f ? f.until - Date.now() : 0;
    return ms > 0 ? `${from} backs off for ${Math.ceil(ms / 1000)} s after failed logins` : null;
  }

  private fail(from: string): void {
    if (!this.o.failures) return;
    const now = Date.now();
    const f = this.failed.get(from) ?? { times: [], until: 0, next: this.o.backoffMs };
    this.failed.delete(from); // re-insert: the map stays in order of last failure
    if (this.failed.size >= 10_000) this.failed.delete(this.failed.keys().next().value!);
    this.failed.set(from, f);
    f.times = f.times.filter((t) => now - t < 60_000);
    f.times.push(now);
    if (f.times.length < this.o.failures) return;
    f.times = [];
    f.until = now + f.next;
    f.next = Math.min(2 * f.next, 15 * 60_000);
  }
}
