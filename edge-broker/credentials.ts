/**
 * The credential file of an edge: users with a role, a fleet and a salted scrypt hash
 * (node:crypto), validated on load. Written by `splitfleet fleet credentials`, read by
 * the broker (auth.ts) and the embedded Node-RED's login.
 */
import { Ajv } from 'ajv';
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { ID_PATTERN } from '../core/wire/topics.js';

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

/** Compared against when the user is unknown, so that case takes as long as a wrong password. */
export const DUMMY_HASH = `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${Buffer.alloc(16).toString('base64')}$${Buffer.alloc(KEY_BYTES).toString('base64')}`;
