/**
 * Decoder workers as plain MQTT clients on Debian's mosquitto (MQTT 5 shared
 * subscriptions): an agent streams frames through the broker, a worker joins and another
 * leaves under load, and every frame is answered exactly once.
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { startMosquitto } from '../../bench/mosquitto.js';
import { Agent } from '../../device-agent/agent.js';
import { ShareWorker } from '../../edge-broker/decode/share-worker.js';
import { deviceTopic } from '../../core/wire/topics.js';
import type { ResultMessage } from '../../core/wire/messages.js';
import { shippedModel } from '../helpers/model.js';
import { waitFor } from '../helpers/wait.js';

test('workers share the frames through $share; one joins and one leaves under load; every frame answered once', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sf-share-'));
  const { proc, url } = await startMosquitto(dir);
  const bundle = await shippedModel();
  const worker = (id: string) =>
    ShareWorker.start({ url, group: 'decoders', workerId: id, bundles: [bundle] });
  const workers = [await worker('w1'), await worker('w2')];
  const sniffer = await connectAsync(url, { reconnectPeriod: 0 });
  const answers = new Map<number, number>();
  sniffer.on('message', (_t, p) => {
    const r = JSON.parse(p.toString()) as ResultMessage;
    answers.set(r.frameId, (answers.get(r.frameId) ?? 0) + 1);
  });
  await sniffer.subscribeAsync(deviceTopic('share', 'cam', 'result'), { qos: 1 });
  const agent = new Agent({
    url,
    fleet: 'share',
    deviceId: 'cam',
    bundle,
    codec: 'split-q',
    point: 2,
    source: { source: 'sample', loop: true, limit: 240 },
    fps: 0,
    maxInFlight: 8,
    resultTimeoutMs: 30_000,
  });
  try {
    await agent.start();
    const run = agent.run();
    await waitFor(() => agent.stats.results >= 60, 60_000);
    workers.push(await worker('w3')); // joins under load
    await waitFor(() => agent.stats.results >= 120, 60_000);
    await workers[0]!.stop(); // leaves under load
    const s = await run;
    await waitFor(() => answers.size >= s.sent, 10_000);
    t.is(s.sent, 240);
    t.is(s.results, 240);
    t.is(s.lost, 0);
    t.is(s.errors, 0);
    t.is(answers.size, 240);
    t.deepEqual(
      [...answers.values()].filter((n) => n !== 1),
      [],
      'each frame answered once',
    );
    const done = workers.map((w) => w.stats.results);
    t.log(`frames per worker: w1 ${done[0]}, w2 ${done[1]}, w3 ${done[2]}`);
    t.true(
      done.every((n) => n > 0),
      `every worker decoded frames: ${done.join(', ')}`,
    );
    t.is(
      done.reduce((a, b) => a + b, 0),
      240,
    );
  } finally {
    await agent.stop(true);
    await sniffer.endAsync();
    for (const w of workers.slice(1)) await w.stop();
    proc.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  }
});
