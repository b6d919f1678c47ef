/**
 * A client gets every packet the edge publishes to it, whatever the order the broker's
 * steps finish in: a retained config published together with an answer to one of the
 * device's frames (the answer has no store step, so it reaches the emitter first) is
 * delivered too, not dropped by Aedes' per-client duplicate check. On one node in memory,
 * one node with its state in Redis, and a cluster of two nodes (the device on the
 * publishing node, and on the other one).
 */
import test from 'ava';
import { connectAsync, type MqttClient } from 'mqtt';
import { startBroker, type BrokerOptions, type EdgeBroker } from '../../edge-broker/broker.js';
import { DEFAULT_BASE, deviceTopic } from '../../core/wire/topics.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { bounded, waitFor } from '../helpers/wait.js';

const FLEET = 'order';
const ROUNDS = 20;

let redis: RedisServer;
test.before(async () => {
  redis = await startRedis();
});
test.after.always(() => bounded('redis', () => redis?.stop() ?? Promise.resolve()));

/** A device's subscriptions on `url`, and what it received on each channel. */
async function device(url: string, id: string): Promise<{ c: MqttClient; got: string[] }> {
  const c = await connectAsync(url, { clientId: `${FLEET}-${id}`, reconnectPeriod: 0 });
  const got: string[] = [];
  c.on('message', (topic, payload) => got.push(`${topic} ${payload.toString()}`));
  const channels = ['config', 'result', 'error'] as const;
  await c.subscribeAsync(
    channels.map((ch) => deviceTopic(FLEET, id, ch)),
    { qos: 1 },
  );
  return { c, got };
}

/** Each round the publisher sends the device a retained config and an answer at once,
 * then a mark once both were taken; when the mark arrives both must have arrived. */
async function rounds(
  publisher: EdgeBroker,
  at: EdgeBroker,
  id: string,
): Promise<{ configs: number; results: number }> {
  const d = await device(at.url, id);
  const counts = { configs: 0, results: 0 };
  try {
    const topic = (ch: 'config' | 'result' | 'error') => deviceTopic(FLEET, id, ch);
    for (let i = 0; i < ROUNDS; i++) {
      await Promise.all([
        publisher.publish(topic('config'), Buffer.from(`config ${i}`), true),
        publisher.publish(topic('result'), Buffer.from(`result ${i}`)),
      ]);
      await publisher.publish(topic('error'), Buffer.from(`mark ${i}`));
      await waitFor(() => d.got.includes(`${topic('error')} mark ${i}`));
      if (d.got.includes(`${topic('config')} config ${i}`)) counts.configs++;
      if (d.got.includes(`${topic('result')} result ${i}`)) counts.results++;
    }
  } finally {
    await d.c.endAsync();
  }
  return counts;
}

const node = (redisMode?: 'persist' | 'cluster'): Promise<EdgeBroker> => {
  const o: BrokerOptions = { port: 0, wsPort: null };
  if (redisMode) o.redis = { url: redis.url, mode: redisMode };
  return startBroker(o);
};

test('one node in memory: a retained config passed by an answer is delivered', async (t) => {
  const b = await node();
  try {
    t.deepEqual(await rounds(b, b, 'cam-mem'), { configs: ROUNDS, results: ROUNDS });
  } finally {
    await b.close();
  }
});

test.serial('one node in Redis: a retained config passed by an answer is delivered', async (t) => {
  const b = await node('persist');
  try {
    t.deepEqual(await rounds(b, b, 'cam-persist'), { configs: ROUNDS, results: ROUNDS });
  } finally {
    await b.close();
  }
});

test.serial('a cluster: the device on the publishing node or on another gets both', async (t) => {
  const a = await node('cluster');
  const b = await node('cluster');
  try {
    t.deepEqual(await rounds(a, a, 'cam-here'), { configs: ROUNDS, results: ROUNDS });
    t.deepEqual(await rounds(a, b, 'cam-there'), { configs: ROUNDS, results: ROUNDS });
  } finally {
    await a.close();
    await b.close();
  }
});

test.serial(
  'a persistent session in Redis: what it acked is not sent again after it reconnects',
  async (t) => {
    const b = await node('persist');
    const topic = deviceTopic(FLEET, 'dash', 'result');
    const opts = { clientId: `${FLEET}-dash`, clean: false, reconnectPeriod: 0 } as const;
    try {
      let c = await connectAsync(b.url, opts);
      const got: string[] = [];
      c.on('message', (_t, p) => got.push(p.toString()));
      await c.subscribeAsync(topic, { qos: 1 });
      for (let i = 0; i < 10; i++) await b.publish(topic, Buffer.from(`answer ${i}`));
      await waitFor(() => got.length >= 10);
      await c.endAsync(); // (ends after its PUBACKs went out)
      // one more while it is away: that one, and only that one, waits for it
      await b.publish(topic, Buffer.from('while away'));
      const again: string[] = [];
      c = await connectAsync(b.url, opts);
      c.on('message', (_t, p) => again.push(p.toString()));
      await b.publish(topic, Buffer.from('mark'));
      await waitFor(() => again.includes('mark'));
      await c.endAsync();
      t.deepEqual(again, ['while away', 'mark']);
    } finally {
      await b.close();
    }
  },
);

test('overlapping subscriptions: one packet is delivered once', async (t) => {
  const b = await node();
  try {
    const c = await connectAsync(b.url, { clientId: `${FLEET}-overlap`, reconnectPeriod: 0 });
    const got: string[] = [];
    c.on('message', (topic, p) => got.push(`${topic} ${p.toString()}`));
    const topic = deviceTopic(FLEET, 'cam-o', 'result');
    await c.subscribeAsync([topic, `${DEFAULT_BASE}/#`], { qos: 1 });
    for (let i = 0; i < 5; i++) await b.publish(topic, Buffer.from(`answer ${i}`));
    await b.publish(deviceTopic(FLEET, 'cam-o', 'error'), Buffer.from('mark'));
    await waitFor(() => got.some((g) => g.endsWith(' mark')));
    await c.endAsync();
    t.deepEqual(
      got.filter((g) => g.startsWith(topic)),
      [0, 1, 2, 3, 4].map((i) => `${topic} answer ${i}`),
    );
  } finally {
    await b.close();
  }
});
