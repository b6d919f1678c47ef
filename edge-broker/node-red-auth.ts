/**
 * Logins for the embedded Node-RED (node-red.ts).
 *
 * - The editor and its admin API use Node-RED's own `adminAuth` (type "credentials"): the
 *   edge's credential file gives the users, an operator of every fleet with full rights
 *   ('*'), a dashboard user read-only ('read': sees the flows, cannot deploy). An operator
 *   pinned to one fleet is read-only there too: a deployed flow (an `exec` or `function`
 *   node) runs code as the edge, with every fleet's data and the edge's own files, which
 *   is more than its fleet. Such an operator still sends ops of its own fleet from the
 *   dashboard (node-red-ops.ts, `operator()`). Devices and workers have no login there. Without a credential file there is one user, `admin`, whose
 *   password is generated on the first start and kept only as a scrypt hash in Node-RED's
 *   user folder (`.splitfleet-admin.json`, mode 0600); delete that file to get a new one.
 * - Everything else Node-RED serves (the dashboard, its socket.io endpoint, HTTP-in
 *   nodes, the sample images) takes an HTTP Basic login of the same users when a
 *   credential file is given.
 *
 * Passwords are checked with scrypt; a login that passed is remembered for a minute (a
 * refused one for a few seconds), keyed by a hash of user and password, so the dashboard's
 * requests do not each cost an scrypt. At most a few checks run at once and a bounded
 * number wait; beyond that a login is answered "busy" rather than queued without end.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hashPassword, newPassword, verifyPassword, type CredentialFile } from './auth.js';
import { limitedLog } from '../core/util/log.js';

/** Node-RED permission scopes: everything, or reading only. */
export type Permissions = '*' | 'read';

/** A user as Node-RED's adminAuth expects it. */
export interface NodeRedUser {
  username: string;
  permissions: Permissions;
}

/** The `adminAuth` setting of Node-RED for these logins. */
export interface AdminAuth {
  type: 'credentials';
  users: (username: unknown) => Promise<NodeRedUser | null>;
  /** A user with the session token Node-RED hands out (instead of one of its own). */
  authenticate: (
    username: unknown,
    password: unknown,
  ) => Promise<(NodeRedUser & { token: string }) | null>;
  /** The user of a session token. */
  tokens: (token: unknown) => Promise<NodeRedUser | null>;
}

interface Account {
  hash: string;
  permissions: Permissions;
  /** An operator of the credential file (or the generated admin): the fleet it operates,
   * null for every fleet; undefined: not an operator. */
  operates?: string | null;
}

/** The user of the generated login (Node-RED without a credential file). */
export const ADMIN_USER = 'admin';
/** Where the generated login's hash is kept, in Node-RED's user folder. */
export const ADMIN_FILE = '.splitfleet-admin.json';

/** How long an editor login lasts. */
const SESSION_MS = 24 * 3600_000;
const SESSIONS_MAX = 1_000;
const PASSED_MS = 60_000;
const REFUSED_MS = 5_000;
const CACHE_MAX = 1_000;
const RUNNING_MAX = 2;
const WAITING_MAX = 32;
/** Longer user names or passwords are refused without hashing them. */
const FIELD_MAX = 1_024;
/** Compared against for unknown users, so that case costs as much as a wrong password. */
const DUMMY_HASH = `scrypt$16384$8$1$${Buffer.alloc(16).toString('base64')}$${Buffer.alloc(32).toString('base64')}`;

export class Logins {
  private readonly cache = new Map<string, { user: NodeRedUser | null; until: number }>();
  private readonly sessions = new Map<string, { user: NodeRedUser; hash: string; until: number }>();
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private accounts: ReadonlyMap<string, Account>) {}

  /** The operator ('*') and dashboard ('read') users of a credential file. */
  static fromCredentials(file: CredentialFile): Logins {
    return new Logins(accountsOf(file));
  }

  /** Replace the users (the credential file was edited): cached logins are forgotten and
   * the sessions of users whose password or rights changed, or who are gone, end. */
  setCredentials(file: CredentialFile): void {
    const next = accountsOf(file);
    this.accounts = next;
    this.cache.clear();
    for (const [token, s] of this.sessions) {
      const a = next.get(s.user.username);
      if (!a || a.permissions !== s.user.permissions || a.hash !== s.hash)
        this.sessions.delete(token);
    }
  }

  /** True when at least one user may deploy. */
  get hasOperator(): boolean {
    return [...this.accounts.values()].some((a) => a.permissions === '*');
  }

  /** Whether `username` may send ops from the dashboard, and of which fleet (null: every
   * fleet); null when it may not (a dashboard user, anyone else). Ask only for a user
   * whose login check() passed. */
  operator(username: string): { fleet: string | null } | null {
    const a = this.accounts.get(username);
    return a?.operates === undefined ? null : { fleet: a.operates };
  }

  /** The user of that name, or null (devices, workers, unknown names). */
  user(username: unknown): NodeRedUser | null {
    if (typeof username !== 'string') return null;
    const a = this.accounts.get(username);
    return a ? { username, permissions: a.permissions } : null;
  }

  /** The user if the password is right; null if not; 'busy' when too many checks wait. */
  async check(username: unknown, password: unknown): Promise<NodeRedUser | null | 'busy'> {
    if (typeof username !== 'string' || typeof password !== 'string') return null;
    if (username.length > FIELD_MAX || password.length > FIELD_MAX) return null;
    const key = createHash('sha256').update(username).update('\0').update(password).digest('hex');
    const now = Date.now();
    const known = this.cache.get(key);
    if (known && known.until > now) return known.user;
    if (known) this.cache.delete(key);
    if (this.running < RUNNING_MAX) this.running++;
    else if (this.waiting.length >= WAITING_MAX) return 'busy';
    else await new Promise<void>((r) => this.waiting.push(r)); // a finished check hands over its slot
    let ok = false;
    try {
      const hash = this.accounts.get(username)?.hash ?? DUMMY_HASH;
      ok = (await verifyPassword(password, hash)) && this.accounts.has(username);
    } catch (e) {
      limitedLog.warn('node-red-login-check', { err: String(e) }, 'node-red: login check failed');
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
    const user = ok ? this.user(username) : null;
    if (this.cache.size >= CACHE_MAX) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.set(key, { user, until: Date.now() + (user ? PASSED_MS : REFUSED_MS) });
    return user;
  }

  /** The user of an `Authorization: Basic ...` header, as check() answers. */
  basic(header: string | undefined): Promise<NodeRedUser | null | 'busy'> {
    const sent = basicLogin(header);
    return sent ? this.check(sent.username, sent.password) : Promise.resolve(null);
  }

  /** A new editor session of `user`: its bearer token. */
  openSession(user: NodeRedUser): string {
    if (this.sessions.size >= SESSIONS_MAX) {
      const oldest = this.sessions.keys().next().value;
      if (oldest !== undefined) this.sessions.delete(oldest);
    }
    const token = randomBytes(32).toString('base64url');
    const hash = this.accounts.get(user.username)?.hash ?? '';
    this.sessions.set(token, { user, hash, until: Date.now() + SESSION_MS });
    return token;
  }

  /** The user of a live session token, or null. */
  session(token: unknown): NodeRedUser | null {
    if (typeof token !== 'string') return null;
    const s = this.sessions.get(token);
    if (s && s.until > Date.now()) return s.user;
    if (s) this.sessions.delete(token);
    return null;
  }

  /** End a session (the editor's log-out). */
  revoke(token: unknown): void {
    if (typeof token === 'string') this.sessions.delete(token);
  }

  /**
   * Node-RED's `adminAuth` setting: logins with these users, none without one. Sessions
   * are kept here, in memory (a restart asks for a new login), rather than in Node-RED's
   * session file.
   */
  adminAuth(): AdminAuth {
    return {
      type: 'credentials',
      users: (username) => Promise.resolve(this.user(username)),
      authenticate: async (username, password) => {
        const user = await this.check(username, password);
        return user && user !== 'busy' ? { ...user, token: this.openSession(user) } : null;
      },
      tokens: (token) => Promise.resolve(this.session(token)),
    };
  }
}

/** The user name and password of an `Authorization: Basic ...` header (unchecked), or null. */
export function basicLogin(
  header: string | undefined,
): { username: string; password: string } | null {
  const m = /^Basic +([A-Za-z0-9+/]+=*) *$/i.exec(header ?? '');
  if (!m?.[1] || m[1].length > 4 * FIELD_MAX) return null;
  const text = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = text.indexOf(':');
  return colon < 0 ? null : { username: text.slice(0, colon), password: text.slice(colon + 1) };
}

/**
 * The generated `admin` login of a Node-RED without a credential file: its hash is read
 * from `userDir`, or on the first start a password is generated, its hash written (mode
 * 0600) and the password returned, the only time it is shown.
 */
export async function generatedAdmin(
  userDir: string,
): Promise<{ logins: Logins; created?: { username: string; password: string } }> {
  const file = join(userDir, ADMIN_FILE);
  let text: string | null = null;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (text !== null) {
    const hash = storedHash(text);
    if (!hash) throw new Error(`${file}: not a stored login; delete it to generate a new password`);
    await chmod(file, 0o600);
    return { logins: adminLogins(hash) };
  }
  const password = newPassword();
  const hash = await hashPassword(password);
  // 'wx': never replace a file written meanwhile
  await writeFile(file, JSON.stringify({ username: ADMIN_USER, hash }) + '\n', {
    mode: 0o600,
    flag: 'wx',
  });
  await chmod(file, 0o600);
  return { logins: adminLogins(hash), created: { username: ADMIN_USER, password } };
}

function adminLogins(hash: string): Logins {
  return new Logins(new Map([[ADMIN_USER, { hash, permissions: '*', operates: null }]]));
}

function storedHash(text: string): string | null {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof data !== 'object' || data === null) return null;
  const hash: unknown = (data as Record<string, unknown>).hash;
  return typeof hash === 'string' && hash.startsWith('scrypt$') ? hash : null;
}

function accountsOf(file: CredentialFile): Map<string, Account> {
  const accounts = new Map<string, Account>();
  for (const [name, c] of Object.entries(file.users)) {
    // the editor's full rights run code as the edge: only for an operator of every fleet
    if (c.role === 'operator')
      accounts.set(name, {
        hash: c.hash,
        permissions: c.fleet === null ? '*' : 'read',
        operates: c.fleet,
      });
    if (c.role === 'dashboard') accounts.set(name, { hash: c.hash, permissions: 'read' });
  }
  return accounts;
}
