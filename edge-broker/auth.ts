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
 * over `ratePerSecond` (token bucket of `burst`), is refused the same way.
 */
import { Ajv } from 'ajv';
import type { Aedes, Client, PublishPacket, Subscription } from 'aedes';
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  clientIdLogin,
  DEFAULT_BASE,
  deviceClientId,
  filterWithin,
  ID_PATTERN,
} from '../core/protocol/topics.js';
import { limitedLog, log } from '../core/util/log.js';

export const ROLES = ['device', 'worker', 'dashboard', 'operator'] as const;
export type Role = (typeof ROLES)[number];

export interface Credential {
  role: Role;
  /** The fleet this user belongs to; null: every fleet (not allowed for devices). */
  fleet: string | null;
  /** `scrypt$<N>$<r>$<p>$<salt b64>$<key b64>` */
  hash: string;
}

export interface CredentialFile {
  version: 1;
  users: Record<string, Credential>;
}

const credentialSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['version', 'users'],
  properties: {
    version: { const: 1 },
    users: {
      type: 'object',
      propertyNames: { pattern: ID_PATTERN },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['role', 'fleet', 'hash'],
        properties: {
          role: { enum: [...ROLES] },
          fleet: { type: ['string', 'null'], pattern: ID_PATTERN },
          hash: {
            type: 'string',
            pattern: '^scrypt\\$\\d+\\$\\d+\\$\\d+\\$[A-Za-z0-9+/=]+\\$[A-Za-z0-9+/=]+$',
          },
        },
      },
    },
  },
} as const;
const validateCredentials = new Ajv({ allErrors: true }).compile<CredentialFile>(credentialSchema);

/** scrypt cost: N = 2^14, r = 8, p = 1 (16 MiB, tens of ms per check). */
const SCRYPT = { N: 16384, r: 8, p: 1 } as const;
const KEY_BYTES = 32;

function scryptAsync(password: string, salt: Buffer, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, KEY_BYTES, { ...opts, maxmem: 64 * 1024 * 1024 }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, SCRYPT);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const [scheme, n, r, p, salt, key] = encoded.split('$');
  if (scheme !== 'scrypt' || !salt || !key) return false;
  const want = Buffer.from(key, 'base64');
  const got = await scryptAsync(password, Buffer.from(salt, 'base64'), {
    N: Number(n),
    r: Number(r),
    p: Number(p),
  });
  return got.length === want.length && timingSafeEqual(got, want);
}

/** A new random password (24 characters of base64url). */
export function newPassword(): string {
  return randomBytes(18).toString('base64url');
}

export function parseCredentials(text: string, file = '<credentials>'): CredentialFile {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not JSON: ${(e as Error).message}`);
  }
  if (!validateCredentials(data)) {
    const why = (validateCredentials.errors ?? []).map(
      (e) => `${e.instancePath || '/'} ${e.message}`,
    );
    throw new Error(`${file}: invalid credential file: ${why.join('; ')}`);
  }
  for (const [user, c] of Object.entries(data.users)) {
    if (c.role === 'device' && c.fleet === null)
      throw new Error(`${file}: device ${user} needs a fleet`);
  }
  return data;
}

export async function loadCredentials(file: string): Promise<CredentialFile> {
  return parseCredentials(await readFile(file, 'utf8'), file);
}

export interface AccessOptions {
  /** Users and roles; omit for an open broker (the offline demo). */
  credentials?: CredentialFile;
  base?: string;
  /** Largest PUBLISH payload accepted from a client. */
  maxPayloadBytes: number;
  /** Messages per second per client (token bucket); 0: no limit. */
  ratePerSecond?: number;
  /** Bucket size; default 2 s worth of messages. */
  burst?: number;
}

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
  };
  private readonly sessions = new WeakMap<Client, Session>();
  private readonly buckets = new WeakMap<Client, { tokens: number; at: number }>();
  private readonly base: string;
  /** Device client ids -> user names, built at the first stored will. */
  private deviceIds: Map<string, string> | undefined;

  constructor(private readonly opts: AccessOptions) {
    this.base = opts.base ?? DEFAULT_BASE;
  }

  get maxPayloadBytes(): number {
    return this.opts.maxPayloadBytes;
  }

  /** Install the hooks on an Aedes broker. */
  install(aedes: Aedes): void {
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
          log.warn({ err: String(e) }, 'authentication failed');
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
        limitedLog.warn(
          `publish:${client.id}`,
          { client: client.id, topic: packet.topic, why },
          'publish refused, client disconnected',
        );
        return cb(new Error(why));
      }
      cb(null);
    };
    aedes.authorizeSubscribe = (client, sub, cb) => {
      if (!this.maySubscribe(client, sub)) {
        this.stats.refusedSubscribes++;
        log.warn({ client: client.id, topic: sub.topic }, 'subscription refused');
        return cb(null, null);
      }
      cb(null, sub);
    };
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
    // unknown users cost the same scrypt as known ones (no user-name oracle by timing)
    const ok = await verifyPassword(password?.toString('utf8') ?? '', cred?.hash ?? DUMMY_HASH);
    if (!ok || !cred || username === undefined) return 4;
    if (client.id !== ownClientId(username, cred, client.id)) {
      limitedLog.warn(
        `client-id:${username}`,
        { client: client.id, user: username, role: cred.role },
        'login refused: a client id that is not its own',
      );
      return 2;
    }
    const session = { user: username, cred };
    const will = pendingWill(client);
    const why = will && this.refuseTopic(session, will);
    if (why) {
      this.stats.refusedWills++;
      limitedLog.warn(
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
        ? this.refuseTopic({ user, cred }, packet)
        : `a stored will of ${String(clientId)}, which is no login's client id`;
    if (!why) return null;
    this.stats.refusedWills++;
    limitedLog.warn(
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
    if (this.opts.ratePerSecond && !this.take(client)) {
      this.stats.rateLimited++;
      return this.refused(`over ${this.opts.ratePerSecond} messages per second`);
    }
    if (!this.opts.credentials) return null;
    const s = this.sessions.get(client);
    if (!s) return this.refused('not authenticated');
    const why = this.refuseTopic(s, packet);
    return why && this.refused(why);
  }

  /** Whether a login may publish this topic (a will included). */
  private refuseTopic(s: Session, packet: { topic: string }): string | null {
    if (packet.topic.startsWith('$SYS/')) return '$SYS/ is reserved';
    return this.filters(s, 'publish').some((f) => filterWithin(packet.topic, f))
      ? null
      : `${s.cred.role} ${s.user} may not publish to ${packet.topic}`;
  }

  private refused(why: string): string {
    this.stats.refusedPublishes++;
    return why;
  }

  private maySubscribe(client: Client, sub: Subscription): boolean {
    if (!this.opts.credentials) return true;
    const s = this.sessions.get(client);
    return !!s && this.filters(s, 'subscribe').some((f) => filterWithin(sub.topic, f));
  }

  /** Topic filters a session may publish or subscribe to. */
  private filters(s: Session, op: 'publish' | 'subscribe'): string[] {
    const b = this.base;
    const f = s.cred.fleet ?? '+';
    switch (s.cred.role) {
      case 'device': {
        const own = `${b}/${f}/device/${s.user}`;
        return op === 'publish'
          ? [`${own}/features`, `${own}/status`, `${own}/fetch`, `${own}/response/#`]
          : [`${own}/result`, `${own}/error`, `${own}/config`, `${own}/chunk`, `${own}/request/#`];
      }
      case 'worker':
        return op === 'publish'
          ? [`${b}/${f}/device/+/result`, `${b}/${f}/device/+/error`]
          : [`${b}/${f}/device/+/features`];
      case 'dashboard':
        return op === 'publish' ? [] : [s.cred.fleet ? `${b}/${f}/#` : `${b}/#`];
      case 'operator':
        return [s.cred.fleet ? `${b}/${f}/#` : `${b}/#`];
    }
  }

  private take(client: Client): boolean {
    const rate = this.opts.ratePerSecond!;
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

/** The will of a client being authenticated (Aedes keeps it in `_will` until then). */
function pendingWill(client: Client): { topic: string } | null {
  const will: unknown = Reflect.get(client, '_will');
  if (!will || typeof will !== 'object') return null;
  const topic: unknown = Reflect.get(will, 'topic');
  return { topic: typeof topic === 'string' ? topic : '' };
}

/** Compared against when the user is unknown, so that case takes as long as a wrong password. */
const DUMMY_HASH = `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${Buffer.alloc(16).toString('base64')}$${Buffer.alloc(KEY_BYTES).toString('base64')}`;
