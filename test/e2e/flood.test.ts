/**
 * A deep backlog from one client (20,000 PUBLISH packets in one write) must not take the
 * edge down: each packet is handed back to Aedes on a later turn of the event loop, so
 * its read loop never recurses (a soak at 10,000 frames/s once overflowed the stack).
 * Every packet is a frame the edge refuses, so each gets an answer.
 */
import test from 'ava';
import { connect } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { connectAsync } from 'mqtt';
import { deviceTopic } from '../../core/wire/topics.js';
import { testEdge } from '../helpers/edge.js';
import { waitFor } from '../helpers/wait.js';

test('20,000 packets in one write: the edge stays up and answers every one', async (t) => {
  const edge = await testEdge({ edgeId: 'edge-flood', fleet: 'flood' });
  const port = Number(new URL(edge.url).port);
  const watcher = await connectAsync(edge.url, { reconnectPeriod: 0 });
  let errors = 0;
  watcher.on('message', () => errors++);
  await watcher.subscribeAsync(deviceTopic('flood', 'f1', 'error'), { qos: 0 });
  const N = Number(process.env.FLOOD_N ?? 20_000);
  const sock = connect(port, '127.0.0.1');
  let reset: string | null = null;
  sock.on('error', (e) => (reset = e.message));
  try {
    await new Promise<void>((r) => sock.on('connect', () => r()));
    const topic = deviceTopic('flood', 'f1', 'features');
    // CONNECT, and its CONNACK, first (Aedes refuses more than 42 packets before it)
    const connack = new Promise<void>((r) => sock.once('data', () => r()));
    sock.write(
      mqttPacket.generate({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clientId: 'flood-f1',
        clean: true,
        keepalive: 0,
      }),
    );
    await connack;
    const one = mqttPacket.generate({
      cmd: 'publish',
      topic,
      payload: Buffer.from([0xc1]),
      qos: 0,
      retain: false,
      dup: false,
    });
    sock.write(Buffer.concat(Array.from({ length: N }, () => one)));
    await waitFor(() => errors >= N || reset !== null, 120_000).catch(() => undefined);
    t.is(reset, null, `connection reset after ${errors} answers`);
    t.is(errors, N);
    t.is(edge.stats().received, N);
    // and it still serves
    const c = await connectAsync(edge.url, { reconnectPeriod: 0 });
    await c.endAsync();
  } finally {
    sock.destroy();
    await watcher.endAsync();
    await edge.close();
  }
});
