/**
 * The Node-RED nodes (flows/nodes) in a Node-RED runtime (node-red-node-test-helper),
 * against a real edge and agent over MQTT: results with filters, presence, commands
 * with their answers and their errors (through done(err), so a Catch node sees them),
 * frame decoding.
 */
import test from 'ava';
import { createRequire } from 'node:module';
import { connectAsync } from 'mqtt';
import { Agent } from '../../device-agent/agent.js';
import type { Edge } from '../../edge-broker/edge.js';
import type { ErrorMessage, ResultMessage } from '../../core/wire/messages.js';
import { encodeFrame } from '../../core/wire/frame.js';
import { deviceTopic } from '../../core/wire/topics.js';
import { hashPassword } from '../../edge-broker/auth.js';
import { testEdge } from '../helpers/edge.js';
import { shippedModel } from '../helpers/model.js';
import { waitFor } from '../helpers/wait.js';

const require = createRequire(import.meta.url);
interface TestNode {
  on(event: string, fn: (msg: Record<string, unknown>) => void): void;
  receive(msg: Record<string, unknown>): void;
}
interface Helper {
  init(path: string): void;
  startServer(): Promise<void>;
  stopServer(): Promise<void>;
  load(nodes: unknown[], flow: unknown[], creds?: Record<string, unknown>): Promise<void>;
  unload(): Promise<void>;
  getNode(id: string): TestNode;
}
const helper = require('node-red-node-test-helper') as Helper;
helper.init(require.resolve('node-red'));
const NODES = ['edge', 'result', 'device', 'command', 'frame'].map((n) =>
  require(`../../flows/nodes/splitfleet-${n}.js`),
);

let edge: Edge;
test.before(async () => {
  // the edge reports its devices under fleet nr, the fleet the nodes connect to
  edge = await testEdge({ edgeId: 'edge-nr', fleet: '+', statusFleet: 'nr' });
  await helper.startServer();
});
test.after.always(async () => {
  await helper.unload();
  await helper.stopServer();
  await edge?.close();
});
test.afterEach.always(() => helper.unload());

const edgeNode = () => ({
  id: 'e',
  type: 'splitfleet-edge',
  url: edge.url,
  base: 'splitfleet',
  fleet: 'nr',
});
/** Messages a helper node receives. */
function collect(id: string): Record<string, unknown>[] {
  const got: Record<string, unknown>[] = [];
  helper.getNode(id).on('input', (m) => got.push(m));
  return got;
}
/** Errors a Catch node receives (errors sent through done(err)). */
const catcher = (scope: string[]) => ({ id: 'c', type: 'catch', scope, wires: [['caught']] });

const fakeResult = (device: string, label: string, score: number): ResultMessage => ({
  v: 1,
  deviceId: device,
  frameId: 1,
  classIndex: 0,
  label,
  score,
  topk: [{ classIndex: 0, label, score }],
  modelId: 1,
  modelVersion: 2,
  model: 'resnet9w05-cifar10',
  codec: 'split-q',
  point: 2,
  payloadBytes: 100,
  captureTs: Date.now(),
  latency: { decodeMs: 0, tailMs: 0, edgeMs: 1, queueMs: 0 },
  edgeId: 'edge-nr',
});

test.serial(
  'splitfleet result: results as messages, filtered by device, group, label and score',
  async (t) => {
    await helper.load(NODES, [
      edgeNode(),
      {
        id: 'r',
        type: 'splitfleet-result',
        edge: 'e',
        device: 'cam1',
        label: 'cat, dog',
        minScore: 0.5,
        wires: [['out']],
      },
      { id: 'out', type: 'helper' },
      { id: 'g', type: 'splitfleet-result', edge: 'e', group: 'yard', wires: [['yard']] },
      { id: 'yard', type: 'helper' },
    ]);
    const got = collect('out');
    const yard = collect('yard');
    const pub = await connectAsync(edge.url, { reconnectPeriod: 0 });
    // cam2's group comes from its retained config, as the edge publishes it
    await pub.publishAsync(
      deviceTopic('nr', 'cam2', 'config'),
      JSON.stringify({
        v: 1,
        configId: 'x',
        fleet: 'nr',
        device: 'cam2',
        group: 'yard',
        settings: {},
      }),
      { qos: 1, retain: true },
    );
    await new Promise((r) => setTimeout(r, 300)); // the node's subscription
    const send = (d: string, l: string, s: number) =>
      pub.publishAsync(deviceTopic('nr', d, 'result'), JSON.stringify(fakeResult(d, l, s)), {
        qos: 1,
      });
    await send('cam1', 'cat', 0.9); // passes
    await send('cam1', 'cat', 0.3); // score too low
    await send('cam1', 'truck', 0.9); // label not asked for
    await send('cam2', 'dog', 0.9); // another device
    await send('cam1', 'dog', 0.7); // passes
    await pub.publishAsync(deviceTopic('nr', 'cam1', 'result'), 'not json', { qos: 1 });
    await waitFor(() => got.length >= 2);
    await new Promise((r) => setTimeout(r, 200));
    t.deepEqual(
      got.map((m) => [
        (m.payload as ResultMessage).label,
        (m.payload as ResultMessage).score,
        m.device,
        m.fleet,
      ]),
      [
        ['cat', 0.9, 'cam1', 'nr'],
        ['dog', 0.7, 'cam1', 'nr'],
      ],
    );
    // the group filter: only cam2 (group yard)
    t.deepEqual(
      yard.map((m) => [m.device, m.group]),
      [['cam2', 'yard']],
    );
    await pub.publishAsync(deviceTopic('nr', 'cam2', 'config'), '', { qos: 1, retain: true });
    await pub.endAsync();
  },
);

test.serial(
  'splitfleet result, output 2: the errors of the same devices, as the edge sends them',
  async (t) => {
    await helper.load(NODES, [
      edgeNode(),
      {
        id: 'r',
        type: 'splitfleet-result',
        edge: 'e',
        device: 'cam1',
        wires: [['out'], ['errors']],
      },
      { id: 'out', type: 'helper' },
      { id: 'errors', type: 'helper' },
    ]);
    const results = collect('out');
    const errors = collect('errors');
    const pub = await connectAsync(edge.url, { reconnectPeriod: 0 });
    try {
      const error = (device: string, reason: string): ErrorMessage => ({
        v: 1,
        deviceId: device,
        frameId: 7,
        code: 'corrupt-payload',
        reason,
        edgeId: 'edge-nr',
        ts: Date.now(),
      });
      // the node subscribes once its connection is up: send again until the first one
      // arrives (a bounded number of times)
      for (let i = 0; i < 30 && errors.length === 0; i++) {
        await pub.publishAsync(
          deviceTopic('nr', 'cam1', 'error'),
          JSON.stringify(error('cam1', 'first')),
          { qos: 1 },
        );
        await waitFor(() => errors.length > 0, 1_000).catch(() => undefined);
      }
      const before = errors.length;
      t.true(before > 0, 'an error reached output 2');
      const opts = { qos: 1 } as const;
      await pub.publishAsync(
        deviceTopic('nr', 'cam2', 'error'),
        JSON.stringify(error('cam2', 'other device')),
        opts,
      );
      await pub.publishAsync(deviceTopic('nr', 'cam1', 'error'), 'not json', opts);
      await pub.publishAsync(
        deviceTopic('nr', 'cam1', 'error'),
        JSON.stringify(error('cam1', 'bad frame')),
        opts,
      );
      // one publisher, in order: once this result is out, every error before it is in
      await pub.publishAsync(
        deviceTopic('nr', 'cam1', 'result'),
        JSON.stringify(fakeResult('cam1', 'cat', 0.9)),
        opts,
      );
      await waitFor(() => results.length > 0);
      const later = errors.slice(before);
      t.deepEqual(
        later.map((m) => [
          m.device,
          (m.payload as ErrorMessage).code,
          (m.payload as ErrorMessage).reason,
        ]),
        [['cam1', 'corrupt-payload', 'bad frame']],
      );
      t.true(errors.every((m) => m.device === 'cam1' && m.fleet === 'nr'));
    } finally {
      await pub.endAsync();
    }
  },
);

test.serial(
  'splitfleet device and command: presence of a real agent; ping and get-config answered; errors reach a Catch node',
  async (t) => {
    await helper.load(NODES, [
      edgeNode(),
      { id: 'd', type: 'splitfleet-device', edge: 'e', wires: [['presence'], ['traffic']] },
      { id: 'presence', type: 'helper' },
      { id: 'traffic', type: 'helper' },
      {
        id: 'cmd',
        type: 'splitfleet-command',
        edge: 'e',
        op: 'ping',
        fleet: 'nr',
        target: 'gate',
        timeout: 2,
        wires: [['answer']],
      },
      { id: 'answer', type: 'helper' },
      catcher(['cmd']),
      { id: 'caught', type: 'helper' },
    ]);
    const presence = collect('presence');
    const traffic = collect('traffic');
    const answers = collect('answer');
    const caught = collect('caught');
    const agent = new Agent({
      url: edge.url,
      fleet: 'nr',
      deviceId: 'gate',
      bundle: await shippedModel(),
      codec: 'split-q',
      point: 2,
      source: { source: 'sample', loop: true, limit: 100_000 },
      fps: 10,
    });
    try {
      await agent.start();
      const run = agent.run();
      await waitFor(() => presence.some((m) => m.event === 'online' && m.device === 'gate'));
      t.like(presence.find((m) => m.event === 'online')!.payload as object, {
        device: 'gate',
        online: true,
        model: 'resnet9w05-cifar10@2',
        codec: 'split-q',
        point: 2,
      });
      await waitFor(
        () => traffic.some((m) => (m.payload as { frames: number }).frames > 0),
        10_000,
      );

      helper.getNode('cmd').receive({});
      helper.getNode('cmd').receive({ op: 'get-config' });
      await waitFor(() => answers.length === 2);
      t.is(typeof (answers.find((m) => m.op === 'ping')!.payload as { ts: number }).ts, 'number');
      t.like(answers.find((m) => m.op === 'get-config')!.payload as object, {
        codec: 'split-q',
        point: 2,
      });
      // an op the device does not know: its error answer; an unknown op: refused at once;
      // a device that does not exist: no answer in time
      helper.getNode('cmd').receive({ op: 'restart-pipeline', device: 'nobody' });
      helper.getNode('cmd').receive({ op: 'self-destruct' });
      await waitFor(() => caught.length === 2, 10_000);
      const errors = caught.map((m) => (m.error as { message: string }).message).sort();
      t.regex(errors[0]!, /no answer to restart-pipeline/);
      t.regex(errors[1]!, /unknown op "self-destruct"/);

      await agent.stop();
      await run;
      await waitFor(() => presence.some((m) => m.event === 'offline' && m.device === 'gate'));
    } finally {
      await agent.stop(true);
    }
  },
);

test.serial(
  'splitfleet frame: a real frame becomes a summary; bytes that are no frame are an error',
  async (t) => {
    await helper.load(NODES, [
      { id: 'f', type: 'splitfleet-frame', wires: [['out']] },
      { id: 'out', type: 'helper' },
      catcher(['f']),
      { id: 'caught', type: 'helper' },
    ]);
    const out = collect('out');
    const caught = collect('caught');
    const frame = encodeFrame({
      frameId: 42,
      modelId: 1,
      modelVersion: 2,
      codecId: 3,
      codecVersion: 1,
      point: 1,
      shape: [4, 2, 2],
      captureTs: Date.now(),
      payload: new Uint8Array(16),
    });
    helper.getNode('f').receive({ payload: Buffer.from(frame) });
    helper.getNode('f').receive({ payload: Buffer.from('garbage') });
    helper.getNode('f').receive({ payload: 'a string' });
    await waitFor(() => out.length === 1 && caught.length === 2);
    t.like(out[0]!.payload as object, {
      frameId: 42,
      modelVersion: 2,
      point: 1,
      shape: [4, 2, 2],
      payloadBytes: 16,
    });
    t.is(typeof (out[0]!.payload as { codec: string }).codec, 'string');
    const errors = caught.map((m) => (m.error as { message: string }).message);
    t.true(errors.some((e) => /not a splitfleet frame/.test(e)));
    t.true(errors.some((e) => /must be the raw frame/.test(e)));
  },
);

test.serial(
  'splitfleet edge: a wrong login shows on the status dot; the right one (as Node-RED credentials) connects',
  async (t) => {
    const locked = await testEdge({
      edgeId: 'edge-locked',
      access: {
        credentials: {
          version: 1,
          users: { dash: { role: 'dashboard', fleet: null, hash: await hashPassword('dash-pw') } },
        },
      },
    });
    try {
      const flow = [
        { id: 'e', type: 'splitfleet-edge', url: locked.url, base: 'splitfleet', fleet: '+' },
        { id: 'r', type: 'splitfleet-result', edge: 'e', wires: [[]] },
        { id: 's', type: 'status', scope: ['r'], wires: [['st']] },
        { id: 'st', type: 'helper' },
      ];
      const statuses = async (pw: string) => {
        await helper.load(NODES, flow, { e: { username: 'dash', password: pw } });
        const seen: string[] = [];
        helper.getNode('st').on('input', (m) => seen.push((m.status as { text: string }).text));
        return seen;
      };
      const wrong = await statuses('nope');
      await waitFor(() => wrong.includes('login refused'));
      t.pass('login refused shown');
      await helper.unload();
      const right = await statuses('dash-pw');
      await waitFor(() => right.includes('connected'));
      t.false(right.includes('login refused'));
    } finally {
      await helper.unload();
      await locked.close();
    }
  },
);
