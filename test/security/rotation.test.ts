/**
 * Credential rotation without a restart: the edge re-reads its credential file when it
 * changes; a client whose password was rotated or whose login was removed is disconnected,
 * the old password is refused and the new one accepted; other clients stay connected.
 */
import test from 'ava';
import { connectAsync, type MqttClient } from 'mqtt';
import { hashPassword, type CredentialFile } from '../../edge-broker/auth.js';
import { startBroker, type EdgeBroker } from '../../edge-broker/broker.js';
import { deviceClientId } from '../../core/wire/topics.js';
import { waitFor } from '../helpers/wait.js';

let broker: EdgeBroker;
test.after.always(() => broker?.close());

const login = (user: string, password: string) =>
  connectAsync(broker.url, {
    username: user,
    password,
    clientId: deviceClientId('f', user),
    reconnectPeriod: 0,
    connectTimeout: 30_000, // a login runs scrypt: slow on a loaded machine, never a verdict
  });

async function refused(user: string, password: string): Promise<number | undefined> {
  try {
    const c = await login(user, password);
    await c.endAsync();
    return undefined;
  } catch (e) {
    return (e as { code?: number }).code;
  }
}

test('a rotated or removed login is disconnected and its old password refused', async (t) => {
  const users = async (cam1: string): Promise<CredentialFile> => ({
    version: 1,
    users: {
      cam1: { role: 'device', fleet: 'f', hash: await hashPassword(cam1) },
      cam2: { role: 'device', fleet: 'f', hash: cam2Hash },
    },
  });
  const cam2Hash = await hashPassword('two');
  const first = await users('one');
  broker = await startBroker({ port: 0, wsPort: null, access: { credentials: first } });
  const a: MqttClient = await login('cam1', 'one');
  const b: MqttClient = await login('cam2', 'two');
  let aClosed = false;
  a.on('close', () => (aClosed = true));

  const r = broker.access.setCredentials(await users('uno'));
  t.is(r.disconnected, 1);
  await waitFor(() => aClosed, 10_000);
  t.true(b.connected);
  t.is(await refused('cam1', 'one'), 4);
  t.is(await refused('cam1', 'uno'), undefined);

  // cam2 removed
  const next = await users('uno');
  delete next.users.cam2;
  t.is(broker.access.setCredentials(next).disconnected, 1);
  await waitFor(() => !b.connected, 10_000);
  t.is(await refused('cam2', 'two'), 4);
  await a.endAsync(true);
  await b.endAsync(true);
});
