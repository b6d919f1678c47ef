/**
 * Wire v2 over real sockets: agents announcing contexts and sending lean frames (single
 * and batched) to the edge, getting compact answers; v1 agents and raw v1 frames against
 * the same edge; an unknown context answered with an error the agent recovers from.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { connectAsync, type MqttClient } from 'mqtt';
import { Accuracy, datasetLabels } from '../../device-agent/accuracy.js';
import { Agent, type AgentOptions } from '../../device-agent/agent.js';
import { HeadPipeline } from '../../device-agent/pipeline.js';
import { frameSource } from '../../device-agent/source.js';
import { startBroker } from '../../edge-broker/broker.js';
import { EdgeBus } from '../../edge-broker/bus.js';
import { startEdge, type Edge } from '../../edge-broker/edge.js';
import { Intake } from '../../edge-broker/intake.js';
import { encodeV2, isV2, V2_HEADER_BYTES } from '../../core/wire/frame-v2.js';
import { decodeFrame, encodeFrame } from '../../core/wire/frame.js';
import { parseError, parseResult } from '../../core/wire/messages.js';
import { deviceFilter, deviceTopic, parseTopic } from '../../core/wire/topics.js';
import { parseAnswerChannel } from '../../core/wire/context.js';
import { resolveBundle } from '../../core/model/zoo.js';
import { shippedModel } from '../helpers/model.js';
import { waitFor } from '../helpers/wait.js';

const FLEET = 'v2';

async function edgeUp(): Promise<Edge> {
  return startEdge({
    bundles: [await shippedModel()],
    port: 0,
    wsPort: 0,
    workers: 1,
    edgeId: 'edge-v2',
  });
}

/** Every message on a filter, with its topic. */
async function watch(url: string, filter: string) {
  const client = await connectAsync(url, { protocolVersion: 4 });
  const msgs: { topic: string; payload: Buffer }[] = [];
  client.on('message', (topic, payload) => msgs.push({ topic, payload }));
  await client.subscribeAsync(filter, { qos: 1 });
  return { client, msgs };
}

async function agent(
  edge: Pick<Edge, 'url'>,
  deviceId: string,
  frames: number,
  extra: Partial<AgentOptions>,
) {
  return new Agent({
    url: edge.url,
    fleet: FLEET,
    deviceId,
    bundle: await shippedModel(),
    codec: 'split-q',
    point: 0,
    source: { source: 'sample', loop: true, limit: frames },
    fps: 0,
    maxInFlight: 4,
    resultTimeoutMs: 60_000,
    ...extra,
  });
}

const channel = (topic: string) => {
  const p = parseTopic(topic);
  return p?.kind === 'device' ? `${p.deviceId}/${p.channel}` : topic;
};

test('a v2 agent streams lean frames and gets compact answers; a v1 agent on the same edge is served as before', async (t) => {
  const edge = await edgeUp();
  const uplink = await watch(edge.url, `splitfleet/${FLEET}/device/+/+`);
  const v2 = await agent(edge, 'lean', 30, { wire: 'v2', topk: 2 });
  const v1 = await agent(edge, 'old', 10, {});
  const labels = await datasetLabels({ source: 'sample' });
  const acc = new Accuracy(labels);
  acc.follow(v2);
  const headers: number[] = [];
  v2.on('frame', (f) => headers.push(f.frameBytes - f.payloadBytes));
  await Promise.all([v2.start(), v1.start()]);
  // the QoS of each answer as the devices receive it (QoS 1 costs a PUBACK on the uplink)
  const qos: string[] = [];
  for (const a of [v2, v1])
    (a as unknown as { session: { client: MqttClient } }).session.client.on(
      'packetreceive',
      (p) => {
        if (p.cmd === 'publish') qos.push(`${channel(p.topic)} ${p.qos}`);
      },
    );
  const [s2, s1] = await Promise.all([v2.run(), v1.run()]);
  t.is(s2.results, 30);
  t.is(s2.errors + s2.lost, 0);
  t.true(acc.correct > 18, `accuracy ${acc.correct}/30`);
  t.is(s1.results, 10);
  t.is(s1.errors + s1.lost, 0);

  t.deepEqual(new Set(headers), new Set([V2_HEADER_BYTES]), 'frames told with their v2 bytes');
  const counts = v2.wire!.counts;
  t.is(counts.v1 + counts.v2, 30);
  t.true(counts.v2 >= 25, `v2 frames ${counts.v2}`); // the first ones wait for the context's ack

  // on the wire: v2 frames with a 6-byte header, compact answers of at most 32 B, and the
  // full results for dashboards on .../result for both devices
  await waitFor(() => uplink.msgs.filter((m) => channel(m.topic) === 'lean/result').length >= 30);
  const of = (c: string) => uplink.msgs.filter((m) => channel(m.topic) === c);
  const payloads = new Set(of('lean/result').map((m) => parseResult(m.payload)!.payloadBytes));
  for (const m of of('lean/f')) {
    t.true(isV2(m.payload));
    t.true(payloads.has(m.payload.byteLength - V2_HEADER_BYTES), 'a 6-byte header');
  }
  t.is(of('lean/f').length, counts.v2);
  const answers = of('lean/a')
    .map((m) => ({ size: m.payload.byteLength, m: parseAnswerChannel(m.payload) }))
    .filter((x) => x.m.kind === 'answer');
  t.is(answers.length, 30);
  for (const a of answers) {
    t.true(a.size <= 32, `${a.size} B`);
    t.is(a.m.kind === 'answer' ? a.m.answer.more?.length : -1, 1, 'top-2 asked');
  }
  t.is(of('old/result').length, 10);
  t.is(of('old/a').length, 0, 'a v1 agent gets no compact answers');
  // compact answers come at QoS 0: no PUBACK on the device's uplink (JSON results: QoS 1)
  t.true(qos.filter((q) => q === 'lean/a 0').length >= 25);
  t.is(qos.filter((q) => q.startsWith('lean/a ') && q !== 'lean/a 0').length, 0);
  t.true(qos.filter((q) => q === 'old/result 1').length >= 10);
  t.is(of('old/f').length, 0);
  await Promise.all([v2.stop(), v1.stop()]);
  await uplink.client.endAsync();
  await edge.close();
});

test('batched v2 frames: several per PUBLISH, each answered', async (t) => {
  const edge = await edgeUp();
  const uplink = await watch(edge.url, deviceTopic(FLEET, 'batcher', 'f'));
  const a = await agent(edge, 'batcher', 40, {
    wire: 'v2',
    maxInFlight: 8,
    batch: { maxFrames: 4, maxDelayMs: 50 },
  });
  await a.start();
  const s = await a.run();
  t.is(s.results, 40);
  t.is(s.errors + s.lost, 0);
  const c = a.wire!.counts;
  t.true(c.v2 > 0 && c.batches < c.v2, `${c.v2} v2 frames in ${c.batches} packets`);
  await waitFor(() => uplink.msgs.length >= c.batches);
  t.true(
    uplink.msgs.some((m) => m.payload[0] === 0x22),
    'a batch went on the wire',
  );
  await a.stop();
  await uplink.client.endAsync();
  await edge.close();
});

test('an unknown context gets an error naming it; the agent announces again and loses nothing', async (t) => {
  const edge = await edgeUp();
  const errors = await watch(edge.url, deviceFilter('error', FLEET));
  // a raw client: a v2 frame in a context nobody announced
  const raw = await connectAsync(edge.url, { protocolVersion: 4 });
  await raw.publishAsync(
    deviceTopic(FLEET, 'stranger', 'f'),
    Buffer.from(encodeV2(5, { seq: 1, ts16: 2, payload: new Uint8Array(8) })),
    { qos: 1 },
  );
  await waitFor(() => errors.msgs.length >= 1);
  const e = parseError(errors.msgs[0]!.payload)!;
  t.is(e.code, 'unknown-context');
  t.is(e.context, 5);
  t.is(e.frameId, null);

  // an agent whose session the edge forgets mid-stream (a birth of a newer connection
  // makes it do so): its v2 frames come back as unknown, it sends them as v1 and goes on
  const a = await agent(edge, 'forgotten', 40, { wire: 'v2', fps: 20 });
  await a.start();
  const run = a.run();
  await waitFor(() => a.wire!.counts.v2 >= 5);
  const birth = { state: 'online', seq: 1, ts: Date.now() + 3_600_000 };
  await raw.publishAsync(deviceTopic(FLEET, 'forgotten', 'status'), JSON.stringify(birth), {
    qos: 1,
  });
  const s = await run;
  t.is(s.results, 40);
  t.is(s.lost, 0);
  const unknown = errors.msgs
    .filter((m) => channel(m.topic) === 'forgotten/error')
    .map((m) => parseError(m.payload)!.code);
  t.true(unknown.length >= 1 && unknown.every((c) => c === 'unknown-context'));
  t.true(a.wire!.counts.announces >= 3, 'the session and its context were announced again');
  await a.stop();
  await raw.endAsync();
  await errors.client.endAsync();
  await edge.close();
});

test('an edge with full results off: compact answers only for v2 devices, full results still for v1 devices; its payload cap refuses larger frames', async (t) => {
  const bundle = await shippedModel();
  const broker = await startBroker({ port: 0, wsPort: null });
  const bus = new EdgeBus();
  const intake = new Intake({
    broker,
    bus,
    edgeId: 'edge-quiet',
    base: 'splitfleet',
    fleet: '+',
    bundles: [bundle],
    decoders: { workers: 1, threads: 1, maxQueue: 64 },
    fullResults: false,
    maxFrameBytes: 64 * 1024,
  });
  await intake.start();
  const results = await watch(broker.url, deviceFilter('result', FLEET));
  const errors = await watch(broker.url, deviceFilter('error', FLEET));
  const edge = { url: broker.url };
  const lean = await agent(edge, 'quiet-v2', 12, { wire: 'v2' });
  const old = await agent(edge, 'quiet-v1', 6, {});
  await Promise.all([lean.start(), old.start()]);
  const [s2, s1] = await Promise.all([lean.run(), old.run()]);
  t.is(s2.results, 12);
  t.is(s1.results, 6);
  await waitFor(() => results.msgs.length >= 6);
  t.deepEqual(
    [...new Set(results.msgs.map((m) => channel(m.topic)))],
    ['quiet-v1/result'],
    'no full result for the device taking compact answers',
  );
  // a v1 frame over the edge's cap
  const pipe = await HeadPipeline.create(bundle, 'split-q', 0);
  const first = await frameSource({ source: 'sample', limit: 1 }).next();
  if (first.done) throw new Error('the sample is empty');
  const good = decodeFrame((await pipe.encode(first.value, 77)).frame);
  const big = encodeFrame({ ...good, payload: new Uint8Array(64 * 1024 + 1) });
  const raw = await connectAsync(broker.url, { protocolVersion: 4 });
  await raw.publishAsync(deviceTopic(FLEET, 'big', 'features'), Buffer.from(big), { qos: 1 });
  await waitFor(() => errors.msgs.length >= 1);
  const e = parseError(errors.msgs[0]!.payload)!;
  t.is(e.code, 'malformed-frame');
  t.regex(e.reason, /exceeds/);
  await pipe.close();
  await Promise.all([lean.stop(), old.stop()]);
  await Promise.all([raw.endAsync(), results.client.endAsync(), errors.client.endAsync()]);
  await intake.stop();
  await broker.close();
});

test('a v2 agent with an outbox: frames kept while the edge is away go when it comes, every one answered', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sf-v2-outbox-'));
  let edge = await edgeUp();
  const port = Number(new URL(edge.url).port);
  await edge.close(); // the edge is away when the agent starts: it captures into its outbox
  const a = await agent(edge, 'boxed', 12, {
    wire: 'v2',
    fps: 20,
    outbox: { dir },
    reconnectPeriodMs: 100,
    maxReconnectMs: 400,
  });
  await a.start();
  const run = a.run();
  await waitFor(() => a.stats.sent >= 6);
  edge = await startEdge({
    bundles: [await shippedModel()],
    port,
    wsPort: 0,
    workers: 1,
    edgeId: 'edge-v2',
  });
  const s = await run;
  t.is(s.results, 12);
  t.is(s.lost + s.errors, 0);
  t.is(a.wire!.counts.v1 + a.wire!.counts.v2, 12, 'each frame sent once');
  await a.stop();
  await edge.close();
  await rm(dir, { recursive: true, force: true });
});

test('learned-codec frames in the older rANS layout (codec version 1) get the answers frames in the current layout get', async (t) => {
  const bundle = await resolveBundle('resnet9w05-cifar10', { codec: 'splitfleet' });
  const edge = await startEdge({ bundles: [bundle], port: 0, wsPort: 0, workers: 1, edgeId: 'e' });
  const results = await watch(edge.url, deviceFilter('result', FLEET));
  const errors = await watch(edge.url, deviceFilter('error', FLEET));
  const pipe = await HeadPipeline.create(bundle, 'splitfleet', 4);
  const codec = pipe.codec;
  if (codec.kind !== 'feature') return t.fail('a feature codec');
  t.is(codec.version, 2);
  const pub = await connectAsync(edge.url, { protocolVersion: 4 });
  const topic = deviceTopic(FLEET, 'older', 'features');
  const source = frameSource({ source: 'sample', limit: 8 });
  let id = 0;
  let saved = 0;
  for await (const sample of source) {
    const now = decodeFrame((await pipe.encode(sample, ++id)).frame);
    t.is(now.codecVersion, 2);
    const symbols = codec.decode(now.payload, now.shape, now.point, 2);
    const payload = codec.encode(symbols, now.point, 1);
    saved += payload.length - now.payload.length;
    const old = { ...now, frameId: 1000 + id, codecVersion: 1, payload };
    for (const f of [now, old])
      await pub.publishAsync(topic, Buffer.from(encodeFrame(f)), { qos: 1 });
  }
  await waitFor(() => results.msgs.length + errors.msgs.length >= 2 * id);
  t.is(errors.msgs.length, 0);
  const byId = new Map(
    results.msgs.map((m) => [parseResult(m.payload)!.frameId, parseResult(m.payload)!]),
  );
  for (let k = 1; k <= id; k++) {
    const [a, b] = [byId.get(k)!, byId.get(1000 + k)!];
    t.is(a.classIndex, b.classIndex);
    t.is(a.score, b.score);
  }
  t.true(saved > 0, `stream 1 took ${saved} B more over ${id} frames`);
  await pipe.close();
  await pub.endAsync();
  await results.client.endAsync();
  await errors.client.endAsync();
  await edge.close();
});
