/**
 * Credential files and refusal logs for the broker's security tests.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { hashPassword, type CredentialFile, type Role } from '../../edge-broker/auth.js';
import { RateLimitedLog } from '../../core/util/log.js';

/** A credential file of `users` (name -> role; devices in fleet `f`, others in every
 * fleet), all with the one `password`. */
export async function credentialsFor(
  users: Record<string, Role>,
  password: string,
): Promise<CredentialFile> {
  const hash = await hashPassword(password);
  return {
    version: 1,
    users: Object.fromEntries(
      Object.entries(users).map(([name, role]) => [
        name,
        { role, fleet: role === 'device' ? 'f' : null, hash },
      ]),
    ),
  };
}

/** A refusal log (one line per key per minute, as the broker's) whose lines land in
 * `lines`, for tests that count what the broker writes. */
export function capturedLog(): { log: RateLimitedLog; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  return { log: new RateLimitedLog(60_000, 10_000, Date.now, pino(sink)), lines };
}
