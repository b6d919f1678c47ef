/**
 * Login cost: password checks (scrypt) run a few at a time, a few per address, and an
 * address with repeated failures is refused at once, without a check, for a while that
 * grows; so a flood of wrong logins from one address barely slows a good login from
 * another. Refused logins are counted and logged, once a minute per address.
 * (Linux routes all of 127.0.0.0/8 to loopback: 127.0.0.2 is a second address.)
 */
import test from 'ava';
import { capturedLog, credentialsFor, deviceConnect } from '../helpers/credentials.js';
import { connect as tcp } from 'node:net';
import { connectAsync } from 'mqtt';
import { startBroker, type EdgeBroker } from '../../edge-broker/broker.js';
import { deviceClientId } from '../../core/wire/topics.js';

const PW = 'pw-secret';
let broker: EdgeBroker;
let logged: string[] = [];

test.before(async () => {
  const credentials = await credentialsFor({ cam1: 'device', cam2: 'device' }, PW);
  const captured = capturedLog();
  logged = captured.lines;
  broker = await startBroker({
    port: 0,
    wsPort: null,
    host: '0.0.0.0',
    access: { credentials, log: captured.log },
  });
});
test.after.always(() => broker?.close());

/** A raw CONNECT from `from`; resolves with the CONNACK return code (or -1: closed). */
function rawLogin(from: string, user: string, password: string): Promise<number> {
  return new Promise((resolve) => {
    const sock = tcp({
      port: Number(new URL(broker.url).port),
      host: '127.0.0.1',
      localAddress: from,
    });
    sock.on('error', () => undefined);
    sock.once('data', (d: Buffer) => {
      resolve(d[3] ?? -1);
      sock.destroy();
    });
    sock.on('close', () => resolve(-1));
    sock.write(deviceConnect(user, password));
  });
}

/** A good login from 127.0.0.1; resolves with how many checks of other logins started
 * while it waited at the broker's gate (counted there, not timed). */
async function goodLogin(): Promise<number> {
  const c = await connectAsync(broker.url, {
    username: 'cam2',
    password: PW,
    clientId: deviceClientId('f', 'cam2'),
    reconnectPeriod: 0,
    connectTimeout: 60_000, // a login runs scrypt: slow on a loaded machine, never a verdict
  });
  c.end(true);
  const mine = broker.access.recentLogins.filter((l) => l.from.endsWith('127.0.0.1')).at(-1);
  if (!mine) throw new Error('the good login went through no password check');
  return mine.waitedChecks;
}

// Fairness is counted in password checks, not timed: a good login from one address waits
// for a handful of checks however many wrong ones another address has queued.
test.serial('a flood of wrong logins from one address barely slows a good one', async (t) => {
  t.is(await goodLogin(), 0, 'alone: no wait');
  const before = broker.access.stats.refusedConnects;
  const flood = Array.from({ length: 60 }, () => rawLogin('127.0.0.2', 'cam1', 'wrong'));
  await new Promise((r) => setTimeout(r, 20)); // the flood is in
  const checks = await goodLogin();
  const codes = await Promise.all(flood);
  t.log(`password checks while the good login waited: ${checks} (60 wrong logins queued)`);
  // at most the checks running when it came (4) and one from the flood's turn
  t.true(checks <= 5, `${checks} checks`);
  t.true(
    codes.every((c) => c === 3 || c === 4),
    codes.join(','),
  );
  t.true(codes.filter((c) => c === 3).length > 0, 'some refused at once');
  t.is(broker.access.stats.refusedConnects - before, 60);
  t.true(
    logged.filter((l) => l.includes('127.0.0.2')).length <= 3,
    `${logged.length} lines logged`,
  );
  const line = logged.find((l) => l.includes('127.0.0.2'));
  t.truthy(line, 'refused logins are logged');
  // with the reason and the user named
  const o = JSON.parse(line!) as { msg: string; why: string; user: string };
  t.is(o.msg, 'login refused');
  t.is(o.user, 'cam1');
  t.true(o.why.length > 0);
});

test.serial(
  'after repeated failures an address is refused at once, even with the right password',
  async (t) => {
    for (let i = 0; i < 6; i++) await rawLogin('127.0.0.3', 'cam1', 'wrong');
    const checks = broker.access.stats.passwordChecks;
    t.is(await rawLogin('127.0.0.3', 'cam1', PW), 3);
    t.is(broker.access.stats.passwordChecks, checks, 'no password check');
    // other addresses are not affected
    t.is(await rawLogin('127.0.0.4', 'cam1', PW), 0);
  },
);
