/**
 * Last wills pass the publish ACL of their login: at CONNECT (a forbidden will gets
 * CONNACK 5, not authorized) and again whenever a stored will is published, including
 * the wills an edge finds in Redis (`--redis-mode persist`) after a restart, which Aedes
 * publishes with no client connected.
 */
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { hashPassword, type CredentialFile } from '../../edge-broker/auth.js';
import { startBroker, type EdgeBroker } from '../../edge-broker/broker.js';
import { deviceClientId, deviceTopic } from '../../core/wire/topics.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

const PW = 'pw-secret';
let credentials: CredentialFile;
let redis: RedisServer | undefined;
const brokers: EdgeBroker[] = [];
const clients: MqttClient[] = [];
let child: ChildProcess | undefined;

test.before(async () => {
  const hash = await hashPassword(PW);
  credentials = {
    version: 1,
    users: {
      camA: { role: 'device', fleet: 'f', hash },
      camB: { role: 'device', fleet: 'f', hash },
      camC: { role: 'device', fleet: 'f', hash },
      ops: { role: 'operator', fleet: null, hash },
    },
  };
});
test.after.always(async () => {
  for (const c of clients) c.end(true);
  child?.kill('SIGKILL');
  for (const b of brokers) await b.close();
  await redis?.stop();
});

const device = (id: string, willTopic: string): IClientOptions => ({
  username: id,
  password: PW,
  clientId: deviceClientId('f', id),
  clean: false,
  reconnectPeriod: 0,
  connectTimeout: 30_000, // a login runs scrypt: slow on a loaded machine, never a verdict
  will: {
    topic: willTopic,
    payload: Buffer.from('{"state":"offline","seq":1e15}'),
    qos: 1,
    retain: true,
  },
});

test.serial('a will another login may not publish is refused at CONNECT: CONNACK 5', async (t) => {
  const b = await startBroker({ port: 0, wsPort: null, access: { credentials } });
  brokers.push(b);
  const err = await t.throwsAsync(
    connectAsync(b.url, device('camA', deviceTopic('f', 'camB', 'status'))),
  );
  t.regex(err?.message ?? '', /Not authorized/i);
  const own = await connectAsync(b.url, device('camA', deviceTopic('f', 'camA', 'status')));
  clients.push(own);
  t.true(own.connected);
});

/** An open edge with its state in Redis, in a process of its own (SIGKILL: a crash). */
async function edgeProcess(url: string): Promise<{ proc: ChildProcess; mqtt: string }> {
  const broker = pathToFileURL(join(process.cwd(), 'edge-broker/broker.ts')).href;
  const code = `const { startBroker } = await import(${JSON.stringify(broker)});
const b = await startBroker({ port: 0, wsPort: null, redis: { url: ${JSON.stringify(url)}, mode: 'persist' } });
console.log('URL ' + b.url);`;
  const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const mqtt = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`edge did not start: ${out}`)), 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /URL (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    proc.on('exit', (c) => reject(new Error(`edge exited (${c}): ${out}`)));
  });
  return { proc, mqtt };
}

test.serial(
  'wills found in Redis after a restart are published only where their owner may publish',
  async (t) => {
    redis = await startRedis();
    // Wills stored by an edge that did not check them (an open edge), which then crashes
    const old = await edgeProcess(redis.url);
    child = old.proc;
    for (const [id, topic] of [
      ['camA', deviceTopic('f', 'camB', 'status')], // another device's status: forbidden
      ['camC', deviceTopic('f', 'camC', 'status')], // its own: fine
    ] as const) {
      const c = await connectAsync(old.mqtt, {
        ...device(id, topic),
        username: undefined,
        password: undefined,
      });
      clients.push(c);
    }
    const exited = new Promise((r) => old.proc.once('exit', r));
    old.proc.kill('SIGKILL');
    await exited;
    child = undefined;

    // the edge comes back with credentials; it replays the stored wills (every 4 heartbeats)
    const b = await startBroker({
      port: 0,
      wsPort: null,
      access: { credentials },
      redis: { url: redis.url, mode: 'persist' },
      aedes: { heartbeatInterval: 250 },
    });
    brokers.push(b);
    const ops = await connectAsync(b.url, {
      username: 'ops',
      password: PW,
      clientId: 'ops:t-1',
      reconnectPeriod: 0,
    });
    clients.push(ops);
    const seen = new Map<string, string>();
    ops.on('message', (topic, payload) => seen.set(topic, payload.toString()));
    await ops.subscribeAsync('splitfleet/f/device/+/status', { qos: 1 });
    // camC's will shows the replay ran; camA's ran in the same batch
    await waitFor(() => seen.has(deviceTopic('f', 'camC', 'status')), 30_000);
    await new Promise((r) => setTimeout(r, 500));
    t.false(
      seen.has(deviceTopic('f', 'camB', 'status')),
      "camA's will on camB's status was published",
    );
    t.true(b.access.stats.refusedWills >= 1);
  },
);
