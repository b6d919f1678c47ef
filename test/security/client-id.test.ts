/**
 * Client ids are bound to the login for every role: a device uses its agent's client id
 * (deviceClientId), every other login `<user>:<suffix>`. A login that presents another
 * client id, such as a device's, is refused with CONNACK 0x02 (identifier rejected) and
 * the session it aimed at stays with its owner.
 */
import test from 'ava';
import { credentialsFor } from '../helpers/credentials.js';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { startBroker, type EdgeBroker } from '../../edge-broker/broker.js';
import { deviceClientId } from '../../core/wire/topics.js';

const PW = 'pw-secret';
let broker: EdgeBroker;
const open: MqttClient[] = [];

test.before(async () => {
  const credentials = await credentialsFor(
    { cam1: 'device', cam2: 'device', dash: 'dashboard', work: 'worker', ops: 'operator' },
    PW,
  );
  broker = await startBroker({ port: 0, wsPort: null, access: { credentials } });
});
test.after.always(async () => {
  for (const c of open) c.end(true);
  await broker?.close();
});

const login = (user: string, clientId: string, extra: IClientOptions = {}): IClientOptions => ({
  username: user,
  password: PW,
  clientId,
  reconnectPeriod: 0,
  connectTimeout: 30_000, // a login runs scrypt: slow on a loaded machine, never a verdict
  ...extra,
});

async function connected(o: IClientOptions): Promise<MqttClient> {
  const c = await connectAsync(broker.url, o);
  open.push(c);
  return c;
}

test.serial("no other login can take a device's session: CONNACK 0x02", async (t) => {
  const cam1 = await connected(login('cam1', deviceClientId('f', 'cam1'), { clean: false }));
  let closed = false;
  cam1.on('close', () => (closed = true));
  for (const user of ['dash', 'work', 'ops', 'cam2']) {
    const err = await t.throwsAsync(
      connectAsync(broker.url, login(user, deviceClientId('f', 'cam1'), { clean: false })),
    );
    t.regex(err?.message ?? '', /Identifier rejected/i, user);
  }
  await new Promise((r) => setTimeout(r, 200));
  t.false(closed, "the device's connection stays");
  t.true(cam1.connected);
});

test.serial('each non-device login uses `<user>:<suffix>`, and only its own', async (t) => {
  for (const user of ['dash', 'work', 'ops']) {
    const c = await connected(login(user, `${user}:t-1`));
    t.true(c.connected, user);
    c.end(true);
  }
  for (const [user, id] of [
    ['dash', 'ops:t-1'], // another login's
    ['ops', 'ops'], // no suffix
    ['ops', 'ops:'], // empty suffix
    ['ops', 'ops:a/b'], // a suffix outside [A-Za-z0-9_.-]
    ['dash', 'mqttjs_1234abcd'],
  ] as const) {
    const err = await t.throwsAsync(connectAsync(broker.url, login(user, id)));
    t.regex(err?.message ?? '', /Identifier rejected/i, `${user} as ${id}`);
  }
});

test.serial('a wrong password is still CONNACK 4, whatever the client id', async (t) => {
  const err = await t.throwsAsync(
    connectAsync(broker.url, { ...login('dash', 'cam-x'), password: 'wrong' }),
  );
  t.regex(err?.message ?? '', /Bad username or password/i);
});
