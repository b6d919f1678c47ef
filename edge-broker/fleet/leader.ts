/**
 * Which node of a cluster runs rollouts: the holder of a lock in Redis with an expiry.
 *
 * A node takes the lock with `SET key value NX PX ttl` and renews it every ttl/3 with a
 * script that extends it only while it still holds this node's value; on stop it deletes
 * it the same way (check, then delete), so the next node takes over at its next try
 * (within ttl/3). A node that dies leaves the lock to expire: another takes over within
 * ttl + ttl/3. A leader that cannot renew (Redis gone) counts itself the leader only
 * until the ttl since its last renewal has passed, the earliest moment another node could
 * take the lock.
 *
 * The leader also keeps the rollout jobs in Redis (next to the lock, written only while
 * the lock is its own), so the node that takes over resumes them; the other nodes read
 * them at each try, to publish the same pins. An edge without Redis is always the leader.
 */
import type { Redis } from 'ioredis';
import type { Aedes } from 'aedes';
import { randomUUID } from 'node:crypto';
import { open, readFile, rename } from 'node:fs/promises';
import { limitedLog, log } from '../../core/util/log.js';
import { clusterOf, redisOptions } from '../cluster.js';

export type LockState = 'took' | 'held' | 'follower';

export interface Leadership {
  /** This node's value in the lock (its edge id and a random part). */
  readonly id: string;
  /** Whether this node holds the lock now. */
  readonly leader: boolean;
  /** `fn` after every try to take or renew the lock: `took` it now, `held` it already,
   * or another node holds it (`follower`); one call at a time, in order, a failure logged. */
  onTry(fn: (state: LockState) => Promise<void>): void;
  /** The jobs the leader saved (JSON), or null: none saved. */
  loadJobs(): Promise<string | null>;
  /** Save the jobs (JSON) for the next leader; does nothing unless the lock is ours. */
  saveJobs(text: string): Promise<void>;
  /** Release the lock if held, and the connection. */
  stop(): Promise<void>;
}

/** How long the lock lasts without renewal. */
export const LEADER_TTL_MS = 10_000;
/** The range a configured ttl must keep: renewals every ttl/3 must fit a Redis round trip
 * on a busy node, and a dead leader must be replaced within the hour. */
export const LEADER_TTL_RANGE = { min: 300, max: 3_600_000 } as const;

/** `ttlMs` checked (an integer in LEADER_TTL_RANGE), or the default when absent. */
export function leaderTtl(ttlMs: number | undefined): number {
  if (ttlMs === undefined) return LEADER_TTL_MS;
  const { min, max } = LEADER_TTL_RANGE;
  if (!Number.isInteger(ttlMs) || ttlMs < min || ttlMs > max)
    throw new RangeError(
      `the leader lock's ttl must be an integer of ${min}..${max} ms, not ${ttlMs}`,
    );
  return ttlMs;
}

const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1]) else return 0 end`;
const SAVE = `if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('set', KEYS[2], ARGV[2]) return 1 else return 0 end`;

export interface LockOptions {
  url: string;
  /** The lock's key; the jobs are kept at `<key>:jobs`. */
  key: string;
  /** Who this node is, in logs and in the lock's value. */
  name: string;
  ttlMs?: number;
}

class RedisLeadership implements Leadership {
  readonly id: string;
  private held = false;
  private validUntil = 0;
  private timer: NodeJS.Timeout | null = null;
  private trying: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly listeners: ((state: LockState) => Promise<void>)[] = [];
  private handled: Promise<void> = Promise.resolve();
  private wasLeader = false;
  private readonly ttl: number;

  constructor(
    private readonly conn: Redis,
    private readonly o: LockOptions,
  ) {
    this.id = `${o.name}/${randomUUID()}`;
    this.ttl = leaderTtl(o.ttlMs);
  }

  get leader(): boolean {
    return this.held && Date.now() < this.validUntil;
  }

  onTry(fn: (state: LockState) => Promise<void>): void {
    this.listeners.push(fn);
  }

  /** The first try (awaited), then one every ttl/3. */
  async start(): Promise<void> {
    await this.attempt();
    this.wasLeader = this.leader;
    this.schedule();
  }

  async loadJobs(): Promise<string | null> {
    return this.conn.get(`${this.o.key}:jobs`).catch((e: unknown) => {
      limitedLog.warn(`leader-load:${this.o.key}`, { err: String(e) }, 'rollout jobs not read');
      return null;
    });
  }

  async saveJobs(text: string): Promise<void> {
    const { key } = this.o;
    await this.conn.eval(SAVE, 2, key, `${key}:jobs`, this.id, text).then(
      (r) => r === 1 || log.warn({ key }, 'rollout jobs not saved: this node lost the lock'),
      (e: unknown) => limitedLog.warn(`leader-save:${key}`, { err: String(e) }, 'jobs not saved'),
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.trying;
    await this.handled;
    if (this.held) {
      await this.conn.eval(RELEASE, 1, this.o.key, this.id).catch(() => undefined);
      this.held = false;
      log.info({ lock: this.o.key }, 'rollout leadership released');
    }
    this.conn.disconnect();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.trying = this.attempt().finally(() => this.schedule());
    }, this.ttl / 3);
  }

  private async attempt(): Promise<void> {
    const { key } = this.o;
    const at = Date.now();
    try {
      if (this.held) {
        if ((await this.conn.eval(RENEW, 1, key, this.id, this.ttl)) === 1) {
          this.validUntil = at + this.ttl;
        } else {
          this.held = false; // expired, or Redis came back without it
          log.warn({ lock: key }, 'rollout leadership lost');
        }
      }
      if (!this.held && (await this.conn.set(key, this.id, 'PX', this.ttl, 'NX')) === 'OK') {
        this.held = true;
        this.validUntil = at + this.ttl;
        log.info({ lock: key, id: this.id }, 'this node leads the rollouts');
      }
    } catch (e) {
      limitedLog.warn(`leader:${key}`, { lock: key, err: String(e) }, 'rollout lock not reached');
    }
    if (this.stopped) return;
    const leader = this.leader;
    const state = !leader ? 'follower' : this.wasLeader ? 'held' : 'took';
    this.wasLeader = leader;
    const fns = [...this.listeners];
    this.handled = this.handled
      .then(async () => {
        for (const fn of fns) await fn(state);
      })
      .catch((e: unknown) => log.warn({ lock: key, err: String(e) }, 'rollout leadership step'));
  }
}

/** A lock on the Redis at `o.url`, after its first try. */
export async function leaderLock(o: LockOptions): Promise<Leadership> {
  const ttl = leaderTtl(o.ttlMs); // a bad ttl fails before any connection
  const { Redis } = await import('ioredis');
  // a command fails at once while Redis is away (the lock's time runs regardless)
  const conn = new Redis({ ...redisOptions(o.url), enableOfflineQueue: false });
  conn.on('error', (e: Error) =>
    limitedLog.warn(`leader-conn:${o.key}`, { err: e.message }, 'rollout lock: redis error'),
  );
  // the first try waits for the connection, for one ttl at most
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ttl);
    conn.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  const lock = new RedisLeadership(conn, o);
  await lock.start();
  return lock;
}

/** The rollout leadership of the edge behind `aedes`: a lock on its Redis, or none (always
 * the leader) where it has no Redis. */
export async function rolloutLeadership(
  aedes: Aedes,
  o: { base: string; fleet: string; name: string; ttlMs?: number },
): Promise<Leadership | null> {
  const redis = clusterOf(aedes);
  if (!redis) return null;
  const key = `splitfleet:${o.base}:${o.fleet}:rollout-leader`;
  return leaderLock({ url: redis.url, key, name: o.name, ttlMs: o.ttlMs });
}

/** Saved jobs (`{ "jobs": [...] }`) if `text` holds them, each checked by `isJob`. */
export function parseJobs<T>(text: string | null, isJob: (v: unknown) => v is T): T[] | null {
  if (text === null) return null;
  let jobs: unknown;
  try {
    jobs = (JSON.parse(text) as { jobs?: unknown }).jobs;
  } catch {
    return null;
  }
  return Array.isArray(jobs) && jobs.every(isJob) ? jobs : null;
}

/** The saved jobs: the leader's in Redis, else those of this node's file (null: none).
 * A damaged file must not keep the edge down: it is kept aside and no job restored. */
export async function readJobs<T>(
  lead: Leadership | null,
  file: string | null,
  isJob: (v: unknown) => v is T,
): Promise<T[] | null> {
  const shared = parseJobs((await lead?.loadJobs()) ?? null, isJob);
  if (shared) return shared;
  const text = file ? await readFile(file, 'utf8').catch(() => null) : null;
  if (text === null || !file) return null;
  const jobs = parseJobs(text, isJob);
  if (jobs) return jobs;
  await rename(file, `${file}.corrupt-${Date.now()}`).catch(() => undefined);
  log.error({ file }, 'rollout state unreadable: moved aside, no jobs restored');
  return null;
}

/** Save the jobs: in Redis while the lock is this node's, and in this node's file. */
export async function writeJobs(
  lead: Leadership | null,
  file: string | null,
  body: string,
): Promise<void> {
  if (lead) await lead.saveJobs(body);
  if (!file) return;
  // written, flushed to disk, then renamed over the old file: never half a file
  const fh = await open(`${file}.tmp`, 'w');
  try {
    await fh.writeFile(body);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(`${file}.tmp`, file);
}
