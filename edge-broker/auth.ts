/**
 * Broker security: per-user credentials stored as salted scrypt hashes (node:crypto),
 * roles with topic ACLs, and per-client limits, as Aedes hooks.
 *
 * Roles, under `<base>/<fleet>/...` (a user's `fleet` pins it to one fleet; null: any):
 * - device:    the username is the device id and its client id must be the agent's
 *              (deviceClientId: `sf-<fleet>-<device>`, or `sf-<hash>` when long); it
 *              publishes only its own `features`, `status`, `fetch` and `response/...`,
 *              subscribes only its own `result`, `error`, `config`, `chunk` and
 *              `request/...` topics.
 * - worker:    an external decoder worker: subscribes to devices' `features`, publishes
 *              their `result` and `error`.
 * - dashboard: reads everything under the base (Node-RED, dashboards), publishes nothing.
 * - operator:  reads and writes everything under the base.
 * Every other role's client id is `<user>:<suffix>` (loginClientId; the suffix 1..64 of
 * [A-Za-z0-9_.-]), so no login can take over a session that is not its own; another
 * client id gets CONNACK 2 (identifier rejected).
 * Nobody publishes to `$SYS/`. A wrong login gets CONNACK 4 (bad user name or
 * password); a refused SUBSCRIBE gets SUBACK 0x80 for that topic; a refused PUBLISH
 * closes the connection (MQTT 3.1.1 has no other answer, MQTT-3.3.5-2) and is logged and
 * counted. Limits apply to every client: a PUBLISH payload over `maxPayloadBytes`, or
 * over `ratePerSecond` (token bucket of `burst`; DEFAULT_RATE with credentials), is
 * refused the same way; so is a retained one off the retained topics (device status and
 * config, the edge's status, devices and jobs), over 64 KiB, or past its login's budget.
 * A will must be one its login may publish: at CONNECT (else CONNACK 5) and when a stored
 * will is published after its client is gone. At most 64 filters per SUBSCRIBE (guard.ts)
 * and 256 subscriptions per client. Password checks go through a LoginGate (a few at a
 * time, address by address, backoff after failures; CONNACK 3 when refused there).
 * Refusals are logged once a minute per client (or address) and kind.
 */
import type { Aedes, Client, PublishPacket, Subscription } from 'aedes';
import { DUMMY_HASH, verifyPassword, type Credential, type CredentialFile } from './credentials.js';
import { LoginGate, type LoginLimits } from './logins.js';
import {
  accessFilters,
  clientIdLogin,
  DEFAULT_BASE,
  deviceClientId,
  deviceFilter,
  edgeTopic,
  filterWithin,
} from '../core/wire/topics.js';
import { limitedLog, log, RateLimitedLog } from '../core/util/log.js';

export {
  hashPassword,
  loadCredentials,
  newPassword,
  parseCredentials,
  ROLES,
  verifyPassword,
  type Credential,
  type CredentialFile,
  type Role,
} from './credentials.js';
export { LoginGate, type LoginLimits } from './logins.js';

export interface AccessOptions {
  /** Users and roles; omit for an open broker (the offline demo). */
  credentials?: CredentialFile;
  base?: string;
  /** Largest PUBLISH payload accepted from a client. */
  maxPayloadBytes: number;
  /** Messages per second per client (token bucket); 0: no limit. Default: none for an
   * open broker; with credentials DEFAULT_RATE for every role but workers (a worker
   * answers the frames of many devices). */
  ratePerSecond?: number;
  /** Bucket size; default 2 s worth of messages. */
  burst?: number;
  /** Largest retained payload (default 64 KiB). */
  retainedMaxBytes?: number;
  /** Retained bytes one login may hold, over all its topics (default 1 MiB; each message
   * counts its topic and 256 B besides its payload). */
  retainedBytesPerLogin?: number;
  /** Filters in one SUBSCRIBE or UNSUBSCRIBE (default 64; guard.ts checks it). */
  maxFiltersPerSubscribe?: number;
  /** Subscriptions one client may hold (default 256). */
  maxSubscriptions?: number;
  /** Where refusals are logged: one line per client and kind per minute. */
  log?: RateLimitedLog;
  /** Password checks (see LoginGate). */
  logins?: Partial<LoginLimits>;
}

/** Messages per second per client with credentials on: a 30 fps camera sends 30 frames
 * and a few status, fetch and response messages a second; 100/s (bursts of 200) leaves it
 * room, and an OTA download paces its fetches by the answers. */
export const DEFAULT_RATE = 100;
export const DEFAULT_LIMITS = {
  retainedMaxBytes: 64 * 1024,
  retainedBytesPerLogin: 1024 * 1024,
  maxFiltersPerSubscribe: 64,
  maxSubscriptions: 256,
} as const;

export interface AccessStats {
  refusedConnects: number;
  refusedPublishes: number;
  refusedSubscribes: number;
  oversized: number;
  /** Connections closed for breaking an MQTT 3.1.1 rule (compliance.ts). */
  violations: number;
  rateLimited: number;
  /** Wills refused: at CONNECT, or stored ones when published with their owner gone. */
  refusedWills: number;
  /** Password checks (scrypt) started: the work logins cost. */
  passwordChecks: number;
}

interface Session {
  user: string;
  cred: Credential;
}

export class Access {
  readonly stats: AccessStats = {
    refusedConnects: 0,
    refusedPublishes: 0,
    refusedSubscribes: 0,
    oversized: 0,
    violations: 0,
    rateLimited: 0,
    refusedWills: 0,
    passwordChecks: 0,
  };
  private readonly sessions = new WeakMap<Client, Session>();
  private readonly buckets = new WeakMap<Client, { tokens: number; at: number }>();
  private readonly base: string;
  private readonly gate: LoginGate;
  readonly log: RateLimitedLog;
  /** Retained bytes per login (the client id on an open broker), per topic. */
  private readonly retained = new Map<string, { total: number; topics: Map<string, number> }>();
  /** Filters granted to each client (unsubscribes take theirs back). */
  private readonly subs = new WeakMap<Client, Set<string>>();
  /** Device client ids -> user names, built at the first stored will. */
  private deviceIds: Map<string, string> | undefined;

  constructor(private readonly opts: AccessOptions) {
    this.base = opts.base ?? DEFAULT_BASE;
    this.log = opts.log ?? limitedLog;
    this.gate = new LoginGate(opts.logins);
  }

  /** A limit: the option, else its default. */
  limit(k: keyof typeof DEFAULT_LIMITS): number {
    return this.opts[k] ?? DEFAULT_LIMITS[k];
  }

  /** The last password checks: address and the checks of others that started while each
   * waited (LoginGate.recent). */
  get recentLogins(): readonly { from: string; waitedChecks: number }[] {
    return this.gate.recent;
  }

  get maxPayloadBytes(): number {
    return this.opts.maxPayloadBytes;
  }

  /**
   * Replace the users (a credential file edited: a password rotated, a user added or
   * removed). Every client whose login is gone, or whose hash, role or fleet changed, is
   * disconnected and must log in again. An open broker stays open (restart to close it).
   */
  setCredentials(next: CredentialFile): { disconnected: number } {
    if (!this.opts.credentials) throw new Error('an open broker cannot take credentials live');
    this.opts.credentials = next;
    this.deviceIds = undefined;
    let disconnected = 0;
    for (const client of connectedClients(this.aedes)) {
      const s = this.sessions.get(client);
      if (!s) continue;
      const now = next.users[s.user];
      if (now && now.hash === s.cred.hash && now.role === s.cred.role && now.fleet === s.cred.fleet)
        continue;
      this.sessions.delete(client);
      client.close();
      disconnected++;
    }
    return { disconnected };
  }

  private aedes: Aedes | undefined;

  /** Install the hooks on an Aedes broker. */
  install(aedes: Aedes): void {
    this.aedes = aedes;
    aedes.authenticate = (client, username, password, cb) => {
      this.authenticate(client, username, password).then(
        (code) => {
          if (code === 0) return cb(null, true);
          this.stats.refusedConnects++;
          const err = Object.assign(new Error(CONNACK_TEXT[code]), { returnCode: code });
          cb(err, false);
        },
        (e: unknown) => {
          this.stats.refusedConnects++;
          this.log.warn(
            `login-failed:${addressOf(client)}`,
            { from: addressOf(client), err: String(e) },
            'login refused: authentication failed',
          );
          cb(
            Object.assign(new Error('server unavailable'), { returnCode: 3 }) as Parameters<
              typeof cb
            >[0],
            false,
          );
        },
      );
    };
    aedes.authorizePublish = (client, packet, cb) => {
      // no client: a stored will of a client gone (after a restart, or of another node)
      if (!client) return cb(this.refuseStoredWill(aedes, packet));
      const why = this.refusePublish(client, packet);
      if (why) {
        this.log.warn(
          `publish:${client.id}`,
          { client: client.id, topic: packet.topic, why },
          'publish refused, client disconnected',
        );
        return cb(new Error(why));
      }
      cb(null);
    };
    aedes.authorizeSubscribe = (client, sub, cb) => {
      const held = this.subs.get(client) ?? new Set<string>();
      this.subs.set(client, held);
      const full = !held.has(sub.topic) && held.size >= this.limit('maxSubscriptions');
      if (full || !this.maySubscribe(client, sub)) {
        this.stats.refusedSubscribes++;
        this.log.warn(
          `subscribe:${client.id}`,
          { client: client.id, topic: sub.topic, why: full ? 'too many subscriptions' : 'ACL' },
          'subscription refused',
        );
        return cb(null, null);
      }
      held.add(sub.topic);
      cb(null, sub);
    };
    aedes.on('unsubscribe', (topics, client) => {
      const held = this.subs.get(client);
      for (const t of topics) held?.delete(t);
    });
  }

  /** The CONNACK return code for a CONNECT: 0 accepted. */
  private async authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
  ): Promise<ConnackCode> {
    const users = this.opts.credentials?.users;
    if (!users) return 0; // open broker
    const cred = username !== undefined ? users[username] : undefined;
    const from = addressOf(client);
    // unknown users cost the same scrypt as known ones (no user-name oracle by timing)
    const ok = await this.gate.run(from, () => {
      this.stats.passwordChecks++;
      return verifyPassword(password?.toString('utf8') ?? '', cred?.hash ?? DUMMY_HASH);
    });
    if (ok !== true || !cred || username === undefined) {
      const why = typeof ok === 'string' ? ok : 'wrong user name or password';
      this.log.warn(`login:${from}`, { from, user: username, why }, 'login refused');
      return typeof ok === 'string' ? 3 : 4;
    }
    if (client.id !== ownClientId(username, cred, client.id)) {
      this.log.warn(
        `client-id:${username}`,
        { client: client.id, user: username, role: cred.role },
        'login refused: a client id that is not its own',
      );
      return 2;
    }
    const session = { user: username, cred };
    const will = pendingWill(client);
    const why =
      will && (this.refuseTopic(session, will) ?? this.refuseRetain(username, will, false));
    if (why) {
      this.stats.refusedWills++;
      this.log.warn(
        `will:${username}`,
        { client: client.id, topic: will.topic, why },
        'login refused: a last will it may not publish',
      );
      return 5;
    }
    this.sessions.set(client, session);
    return 0;
  }

  /** A stored will published with no client: allowed only where its owner, known by
   * the will's client id, may publish. A refused one is deleted from the store. */
  private refuseStoredWill(aedes: Aedes, packet: PublishPacket): Error | null {
    const users = this.opts.credentials?.users;
    if (!users) return null;
    const clientId: unknown = Reflect.get(packet, 'clientId');
    const user = typeof clientId === 'string' ? this.ownerOf(clientId) : undefined;
    const cred = user !== undefined ? users[user] : undefined;
    const why =
      user !== undefined && cred
        ? (this.refuseTopic({ user, cred }, packet) ?? this.refuseRetain(user, packet, true))
        : `a stored will of ${String(clientId)}, which is no login's client id`;
    if (!why) return null;
    this.stats.refusedWills++;
    this.log.warn(
      `stored-will:${String(clientId)}`,
      { client: clientId, topic: packet.topic, why },
      'stored will refused and deleted',
    );
    const store: unknown = Reflect.get(aedes, 'persistence');
    const del: unknown = store && typeof store === 'object' && Reflect.get(store, 'delWill');
    if (typeof del === 'function') {
      const brokerId: unknown = Reflect.get(packet, 'brokerId');
      Promise.resolve(Reflect.apply(del, store, [{ id: clientId, brokerId }])).catch((e: unknown) =>
        log.warn({ err: String(e) }, 'could not delete a refused will'),
      );
    }
    return new Error(why);
  }

  /** The login a client id belongs to (see ownClientId), or undefined. */
  private ownerOf(clientId: string): string | undefined {
    if (!this.deviceIds) {
      this.deviceIds = new Map();
      for (const [user, c] of Object.entries(this.opts.credentials?.users ?? {})) {
        if (c.role === 'device') this.deviceIds.set(deviceClientId(c.fleet!, user), user);
      }
    }
    return this.deviceIds.get(clientId) ?? clientIdLogin(clientId);
  }

  /** The reason a PUBLISH is refused, or null. */
  private refusePublish(client: Client, packet: PublishPacket): string | null {
    if (packet.topic.startsWith('$SYS/')) return this.refused('$SYS/ is reserved');
    const size = packet.payload?.length ?? 0;
    if (size > this.opts.maxPayloadBytes) {
      this.stats.oversized++;
      return this.refused(`payload of ${size} B over the limit of ${this.opts.maxPayloadBytes} B`);
    }
    // a will published as its client goes is not a message of its rate
    const rate = packet === Reflect.get(client, 'will') ? 0 : this.rate(client);
    if (rate && !this.take(client, rate)) {
      this.stats.rateLimited++;
      return this.refused(`over ${rate} messages per second`);
    }
    if (!this.opts.credentials) return this.refused(this.refuseRetain(client.id, packet, true));
    const s = this.sessions.get(client);
    if (!s) return this.refused('not authenticated');
    const why = this.refuseTopic(s, packet) ?? this.refuseRetain(s.user, packet, true);
    return why && this.refused(why);
  }

  /**
   * Retained messages: only on the topics the protocol retains (device status and config,
   * the edge's reports) when credentials are on, at most retainedMaxBytes each and
   * retainedBytesPerLogin in all. An empty one (which deletes) is fine wherever the login
   * may publish. `commit`: count it (the PUBLISH goes ahead).
   */
  private refuseRetain(login: string, p: PublishPacket, commit: boolean): string | null {
    const size = p.payload?.length ?? 0;
    if (!p.retain || size === 0) {
      if (p.retain && commit && this.opts.credentials) this.account(login, p.topic, 0);
      return null;
    }
    if (this.opts.credentials && !this.retainedFilters().some((f) => filterWithin(p.topic, f)))
      return `no retained messages on ${p.topic}`;
    const max = this.limit('retainedMaxBytes');
    if (size > max) return `retained payload of ${size} B over the limit of ${max} B`;
    if (!this.opts.credentials) return null;
    const held = this.retained.get(login);
    const cost = size + p.topic.length + 256;
    const total = (held?.total ?? 0) - (held?.topics.get(p.topic) ?? 0) + cost;
    const budget = this.limit('retainedBytesPerLogin');
    if (total > budget) return `${login} over its retained budget of ${budget} B`;
    if (commit) this.account(login, p.topic, cost);
    return null;
  }

  private account(login: string, topic: string, cost: number): void {
    const held = this.retained.get(login) ?? { total: 0, topics: new Map<string, number>() };
    held.total += cost - (held.topics.get(topic) ?? 0);
    if (cost) held.topics.set(topic, cost);
    else held.topics.delete(topic);
    this.retained.set(login, held);
  }

  private retainedFilters(): string[] {
    const b = this.base;
    return [
      ...(['status', 'config'] as const).map((c) => deviceFilter(c, '+', b)),
      ...(['status', 'devices', 'jobs'] as const).map((c) => edgeTopic('+', '+', c, b)),
    ];
  }

  /** Whether a login may publish this topic (a will included). */
  private refuseTopic(s: Session, packet: { topic: string }): string | null {
    if (packet.topic.startsWith('$SYS/')) return '$SYS/ is reserved';
    return this.filters(s, 'publish').some((f) => filterWithin(packet.topic, f))
      ? null
      : `${s.cred.role} ${s.user} may not publish to ${packet.topic}`;
  }

  private refused<T extends string | null>(why: T): T {
    if (why !== null) this.stats.refusedPublishes++;
    return why;
  }

  private rate(client: Client): number {
    if (this.opts.ratePerSecond !== undefined) return this.opts.ratePerSecond;
    if (!this.opts.credentials) return 0;
    return this.sessions.get(client)?.cred.role === 'worker' ? 0 : DEFAULT_RATE;
  }

  private maySubscribe(client: Client, sub: Subscription): boolean {
    if (!this.opts.credentials) return true;
    const s = this.sessions.get(client);
    return !!s && this.filters(s, 'subscribe').some((f) => filterWithin(sub.topic, f));
  }

  /** Topic filters a session may publish or subscribe to. */
  private filters(s: Session, op: 'publish' | 'subscribe'): string[] {
    return accessFilters(s.cred.role, s.user, s.cred.fleet, op, this.base);
  }

  private take(client: Client, rate: number): boolean {
    const burst = this.opts.burst ?? 2 * rate;
    const now = Date.now();
    const b = this.buckets.get(client) ?? { tokens: burst, at: now };
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * rate);
    b.at = now;
    this.buckets.set(client, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}

type ConnackCode = 0 | 2 | 3 | 4 | 5;
const CONNACK_TEXT = {
  2: 'identifier rejected',
  3: 'server unavailable',
  4: 'bad user name or password',
  5: 'not authorized',
} as const;

/**
 * The client id a login must use: a device its agent's (deviceClientId), any other role
 * `<user>:<suffix>` (loginClientId); `presented` is returned when it fits the pattern.
 */
function ownClientId(user: string, cred: Credential, presented: string): string | null {
  if (cred.role === 'device') return deviceClientId(cred.fleet!, user);
  return clientIdLogin(presented) === user ? presented : null;
}

/** The peer address of a client: TCP and TLS through the guard, WebSocket by its request. */
function addressOf(client: Client): string {
  const conn: unknown = client.conn;
  const a = conn && typeof conn === 'object' ? Reflect.get(conn, 'remoteAddress') : undefined;
  return typeof a === 'string' ? a : (client.req?.socket.remoteAddress ?? '?');
}

/** The will of a client being authenticated (Aedes keeps it in `_will` until then). */
function pendingWill(client: Client): PublishPacket | null {
  const will: unknown = Reflect.get(client, '_will');
  if (!will || typeof will !== 'object') return null;
  const [topic, payload, retain]: unknown[] = ['topic', 'payload', 'retain'].map((k) =>
    Reflect.get(will, k),
  );
  return {
    cmd: 'publish',
    topic: typeof topic === 'string' ? topic : '',
    payload: Buffer.isBuffer(payload) ? payload : Buffer.from(String(payload ?? '')),
    retain: retain === true,
    qos: 0,
    dup: false,
  };
}

/** The clients connected to an Aedes broker now (its `clients` table, which its types do
 * not declare). */
function connectedClients(aedes: Aedes | undefined): Client[] {
  const table: unknown = aedes && (aedes as unknown as { clients?: unknown }).clients;
  return table && typeof table === 'object' ? (Object.values(table) as Client[]) : [];
}
