/**
 * The whole data path over real sockets: device agents -> embedded Aedes broker ->
 * decoder workers -> results, with the shipped model and sample.
 */
import test from 'ava';
import { connectAsync, type MqttClient } from 'mqtt';
import { Accuracy, datasetLabels } from '../../device-agent/accuracy.js';
import { Agent } from '../../device-agent/agent.js';
import { HeadPipeline } from '../../device-agent/pipeline.js';
import { frameSource } from '../../device-agent/source.js';
import { startEdge, type Edge } from '../../edge-broker/edge.js';
import { decodeFrame, encodeFrame } from '../../core/wire/frame.js';
import {
  parseError,
  parseResult,
  type ErrorMessage,
  type ResultMessage,
} from '../../core/wire/messages.js';
import { deviceFilter, deviceTopic, parseTopic } from '../../core/wire/topics.js';
import { shippedModel } from '../helpers/model.js';
import { waitFor } from '../helpers/wait.js';
import { hashPassword } from '../../edge-broker/auth.js';

async function edgeAt(port = 0): Promise<Edge> {
  return startEdge({
    bundles: [await shippedModel()],
    port,
    wsPort: 0,
    workers: 2,
    edgeId: 'edge-test',
  });
}

async function collect(url: string, filter: string) {
  const client = await connectAsync(url, { protocolVersion: 4 });
  const msgs: { topic: string; payload: Buffer }[] = [];
  client.on('message', (topic, payload) => msgs.push({ topic, payload }));
  await client.subscribeAsync(filter, { qos: 1 });
  return { client, msgs };
}

function agent(
  edge: Edge,
  deviceId: string,
  frames: number,
  extra: Partial<ConstructorParameters<typeof Agent>[0]> = {},
) {
  return shippedModel().then(
    (bundle) =>
      new Agent({
        url: edge.url,
        fleet: 'e2e',
        deviceId,
        bundle,
        codec: 'split-q',
        point: 0,
        source: { source: 'sample', loop: true, limit: frames, offset: deviceId.length * 11 },
        fps: 0,
        maxInFlight: 4,
        resultTimeoutMs: 20_000,
        ...extra,
      }),
  );
}

test('every frame id gets exactly one result, seen by any subscriber', async (t) => {
  const edge = await edgeAt();
  const watcher = await collect(edge.url, deviceFilter('result', 'e2e'));
  const agents = await Promise.all([
    agent(edge, 'cam-a', 25),
    agent(edge, 'cam-b', 25, { codec: 'split-fp16' }),
  ]);
  const labels = await datasetLabels({ source: 'sample' });
  const accuracy = agents.map((a) => {
    const acc = new Accuracy(labels);
    acc.follow(a);
    return acc;
  });
  await Promise.all(agents.map((a) => a.start()));
  const stats = await Promise.all(agents.map((a) => a.run()));
  for (const [i, s] of stats.entries()) {
    t.is(s.sent, 25);
    t.is(s.results, 25);
    t.is(s.errors + s.lost, 0);
    const acc = accuracy[i]!;
    t.true(acc.labelled === 25 && acc.correct > 15, `accuracy ${acc.correct}/25`);
  }
  await waitFor(() => watcher.msgs.length >= 50);
  const keys = watcher.msgs.map(({ topic, payload }) => {
    const r = parseResult(payload)!;
    const p = parseTopic(topic);
    t.truthy(r);
    t.is(p?.kind === 'device' ? p.deviceId : '', r.deviceId);
    t.true(r.topk.length === 3 && r.score > 0 && r.score <= 1);
    t.is(typeof r.latency.tailMs, 'number');
    return `${r.deviceId}/${r.frameId}`;
  });
  t.is(new Set(keys).size, 50, 'no duplicate results');
  await new Promise((r) => setTimeout(r, 200));
  t.is(watcher.msgs.length, 50, 'no late extra results');
  await Promise.all(agents.map((a) => a.stop()));
  await watcher.client.endAsync();
  await edge.close();
});

test('a device sending pictures (input offload, jpeg) to a normal edge gets results through its decoder pool', async (t) => {
  const edge = await edgeAt();
  const watcher = await collect(edge.url, deviceFilter('result', 'e2e'));
  const a = await agent(edge, 'cam-jpeg', 20, { codec: 'jpeg', point: 2 });
  const acc = new Accuracy(await datasetLabels({ source: 'sample' }));
  acc.follow(a);
  await a.start();
  const s = await a.run();
  t.is(s.sent, 20);
  t.is(s.results, 20);
  t.is(s.errors + s.lost, 0);
  t.true(acc.labelled === 20 && acc.correct > 12, `accuracy ${acc.correct}/20`);
  await waitFor(() => watcher.msgs.length >= 20);
  for (const { payload } of watcher.msgs) {
    const r = parseResult(payload)!;
    t.is(r.codec, 'jpeg');
    t.is(r.edgeId, 'edge-test');
    t.true(r.latency.decodeMs > 0, 'the edge decoded the picture');
  }
  await a.stop();
  await watcher.client.endAsync();
  await edge.close();
});

test('bad frames get a clear error on the error topic and the worker keeps going', async (t) => {
  const edge = await edgeAt();
  const bundle = await shippedModel();
  const { client, msgs } = await collect(edge.url, deviceFilter('error', 'e2e'));
  const results = await collect(edge.url, deviceFilter('result', 'e2e'));
  const pipe = await HeadPipeline.create(bundle, 'split-q', 0);
  const sample = (await frameSource({ source: 'sample', limit: 1 }).next()).value!;
  const good = decodeFrame((await pipe.encode(sample, 1000)).frame);
  const topic = deviceTopic('e2e', 'mallory', 'features');
  const variants: [string, Uint8Array][] = [
    ['garbage', Buffer.from('not msgpack at all')],
    ['unknown model', encodeFrame({ ...good, frameId: 1001, modelId: 999 })],
    ['unknown codec', encodeFrame({ ...good, frameId: 1002, codecId: 200 })],
    ['codec version', encodeFrame({ ...good, frameId: 1003, codecVersion: 9 })],
    ['wrong shape', encodeFrame({ ...good, frameId: 1004, shape: [64, 16, 8] })],
    [
      'corrupt payload',
      encodeFrame({ ...good, frameId: 1005, payload: good.payload.subarray(0, 20) }),
    ],
    ['unknown point', encodeFrame({ ...good, frameId: 1006, point: 77 })],
  ];
  for (const [, bytes] of variants)
    await client.publishAsync(topic, Buffer.from(bytes), { qos: 1 });
  await client.publishAsync(topic, Buffer.from(encodeFrame(good)), { qos: 1 });
  await waitFor(() => msgs.length >= variants.length && results.msgs.length >= 1);
  const errs = msgs.map((m) => parseError(m.payload)!) as ErrorMessage[];
  t.deepEqual(
    errs.map((e) => [e.frameId, e.code]).sort((a, b) => Number(a[0] ?? 0) - Number(b[0] ?? 0)),
    [
      [null, 'malformed-frame'],
      [1001, 'unknown-model'],
      [1002, 'unknown-codec'],
      [1003, 'unknown-codec'],
      [1004, 'malformed-frame'],
      [1005, 'corrupt-payload'],
      [1006, 'unknown-codec'],
    ],
  );
  for (const e of errs) t.true(e.reason.length > 5 && e.deviceId === 'mallory');
  const r = parseResult(results.msgs[0]!.payload) as ResultMessage;
  t.is(r.frameId, 1000, 'the good frame after the bad ones still gets its result');
  t.is(edge.stats().errors, variants.length);
  await pipe.close();
  await client.endAsync();
  await results.client.endAsync();
  await edge.close();
});

test('a redelivered frame is decoded once; a re-send of an answered frame gets the same answer', async (t) => {
  const edge = await edgeAt();
  const bundle = await shippedModel();
  const results = await collect(edge.url, deviceFilter('result', 'e2e'));
  const pipe = await HeadPipeline.create(bundle, 'split-q', 1);
  const sample = (await frameSource({ source: 'sample', limit: 1 }).next()).value!;
  const { frame } = await pipe.encode(sample, 42);
  const pub: MqttClient = await connectAsync(edge.url);
  const topic = deviceTopic('e2e', 'dup', 'features');
  await pub.publishAsync(topic, Buffer.from(frame), { qos: 1 });
  await waitFor(() => results.msgs.length >= 1);
  // The first answer may have gone to a session that is gone: re-sends get it again.
  for (let i = 0; i < 2; i++) await pub.publishAsync(topic, Buffer.from(frame), { qos: 1 });
  await waitFor(() => results.msgs.length >= 3);
  await new Promise((r) => setTimeout(r, 200));
  t.is(results.msgs.length, 3);
  t.true(
    results.msgs.every((m) => m.payload.equals(results.msgs[0]!.payload)),
    'the same answer',
  );
  t.is(edge.stats().results, 1, 'decoded once');
  t.is(edge.stats().duplicates, 2);
  await pipe.close();
  await pub.endAsync();
  await results.client.endAsync();
  await edge.close();
});

test('a stop waits for the answers of the frames in flight: every frame sent is counted once', async (t) => {
  const edge = await edgeAt();
  t.teardown(() => edge.close());
  const a = await agent(edge, 'stopper', 1000);
  await a.start();
  const run = a.run();
  // stop right after a frame went out, while the window is full of frames in flight
  let stopping: Promise<void> | null = null;
  let inFlightAtStop = 0;
  a.on('published', () => {
    if (stopping || a.stats.results < 5) return;
    inFlightAtStop = a.stats.sent + 1 - a.stats.results - a.stats.errors;
    stopping = a.stop();
  });
  await waitFor(() => stopping !== null);
  await stopping;
  const s = await run;
  t.true(inFlightAtStop >= 1, `${inFlightAtStop} frames in flight at the stop`);
  t.is(s.lost, 0, 'the frames in flight were answered before the connection closed');
  t.is(
    s.sent,
    s.results + s.errors,
    `every frame answered (${s.results} results, ${s.errors} errors)`,
  );
});

test('a stop while a frame is being encoded and none is in flight: that frame is sent and answered, not lost', async (t) => {
  const edge = await edgeAt();
  t.teardown(() => edge.close());
  const a = await agent(edge, 'encoder-stop', 1000, { fps: 10 });
  // the stop lands inside the head's encode of a frame, with every earlier frame answered
  type Use = (fn: (pipe: unknown) => Promise<unknown>) => Promise<unknown>;
  const head = (a as unknown as { head: { use: Use } }).head;
  const use = head.use.bind(head);
  let stopping: Promise<void> | null = null;
  let armed = true;
  head.use = (fn) => {
    const idle = a.stats.sent === a.stats.results + a.stats.errors;
    if (!armed || a.stats.results < 3 || !idle) return use(fn);
    armed = false;
    setImmediate(() => {
      stopping = a.stop();
    });
    return use(async (pipe) => {
      await new Promise((r) => setTimeout(r, 200)); // a slow encode
      return fn(pipe);
    });
  };
  await a.start();
  const run = a.run();
  await waitFor(() => stopping !== null);
  await stopping;
  const s = await run;
  t.is(s.lost, 0, 'the frame taken from the source at the stop was not given up unsent');
  t.is(s.skipped, 0, 'nor skipped');
  t.is(s.sent, s.results + s.errors, `every frame answered ${JSON.stringify(s)}`);
});

test('the agent reconnects after the broker goes away and every frame is answered or counted', async (t) => {
  let edge = await edgeAt();
  const port = Number(new URL(edge.url).port);
  const a = await agent(edge, 'roamer', 40, {
    fps: 40,
    reconnectPeriodMs: 200,
    maxReconnectMs: 1000,
  });
  await a.start();
  const running = a.run();
  await waitFor(() => a.stats.results >= 8);
  await edge.close();
  const before = a.stats.results;
  await new Promise((r) => setTimeout(r, 400));
  edge = await edgeAt(port);
  const s = await running;
  t.true(s.reconnects >= 1, 'reconnected');
  t.true(s.results > before, 'results after the broker came back');
  t.is(s.sent, 40);
  t.is(s.results + s.errors, 40, `every frame answered ${JSON.stringify(s)}`);
  t.is(s.lost, 0, 'unanswered frames are re-sent after the reconnect');
  await a.stop();
  await edge.close();
});

test('browsers can read results over WebSocket', async (t) => {
  const edge = await edgeAt();
  t.truthy(edge.wsUrl);
  const ws = await collect(edge.wsUrl!, deviceFilter('result', 'e2e'));
  const a = await agent(edge, 'cam-ws', 3);
  await a.start();
  await a.run();
  await waitFor(() => ws.msgs.length >= 3);
  t.is(ws.msgs.length, 3);
  await a.stop();
  await ws.client.endAsync();
  await edge.close();
});

test('with credentials, a device runs the whole path under its own identity; a wrong password never connects', async (t) => {
  const pw = 'gate-secret';
  const edge = await startEdge({
    bundles: [await shippedModel()],
    port: 0,
    wsPort: null,
    workers: 1,
    edgeId: 'edge-auth',
    access: {
      credentials: {
        version: 1,
        users: { gate: { role: 'device', fleet: 'e2e', hash: await hashPassword(pw) } },
      },
    },
  });
  try {
    const a = await agent(edge, 'gate', 6, { username: 'gate', password: pw });
    await a.start();
    const s = await a.run();
    t.is(s.results, 6);
    t.is(s.errors + s.lost, 0);
    await a.stop();
    const bad = await agent(edge, 'gate', 1, { username: 'gate', password: 'nope' });
    await t.throwsAsync(bad.start(), { message: /Bad username or password|not authorized/i });
    await bad.stop(true);
    t.true(edge.broker.access.stats.refusedConnects >= 1);
  } finally {
    await edge.close();
  }
});
