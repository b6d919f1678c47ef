/**
 * Credential files and refusal logs for the broker's security tests.
 */
import { Writable } from 'node:stream';
import mqttPacket from 'mqtt-packet';
import { deviceClientId } from '../../core/wire/topics.js';
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

/** The Node-RED console's two logins (an operator and a read-only dashboard user) of
 * every fleet, each with its own password. */
export const OPERATOR = { username: 'op', password: 'operator-password' } as const;
export const VIEWER = { username: 'viewer', password: 'viewer-password' } as const;

/** The credential entries of OPERATOR and VIEWER. */
export async function consoleUsers(): Promise<CredentialFile['users']> {
  return {
    [OPERATOR.username]: {
      role: 'operator',
      fleet: null,
      hash: await hashPassword(OPERATOR.password),
    },
    [VIEWER.username]: {
      role: 'dashboard',
      fleet: null,
      hash: await hashPassword(VIEWER.password),
    },
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

/** The raw MQTT 3.1.1 CONNECT of device `user` of fleet `f` (its own client id), for
 * tests that speak to the broker below mqtt.js. */
export function deviceConnect(user: string, password: string): Buffer {
  return mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    keepalive: 30,
    clientId: deviceClientId('f', user),
    username: user,
    password: Buffer.from(password),
  });
}
