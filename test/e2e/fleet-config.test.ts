/**
 * Fleet configs over real MQTT: the edge publishes each device's effective config
 * retained; the agent applies it without a restart and acknowledges it, or refuses it
 * with the reason and keeps running the old one. Request/response commands to a device.
 */
import test from 'ava';
import { connectAsync, type MqttClient } from 'mqtt';
import { Agent } from '../../device-agent/agent.js';
import type { Edge } from '../../edge-broker/edge.js';
import { testEdge } from '../helpers/edge.js';
import { parseFleet } from '../../fleet-config/load.js';
import type { DeviceStatus, OpResponse } from '../../core/wire/messages.js';
import { deviceOpTopic, deviceTopic } from '../../core/wire/topics.js';
import { shippedModel } from '../helpers/model.js';
import { freePort } from '../helpers/net.js';
import { waitFor } from '../helpers/wait.js';

const fleetText = (codec: string, point: number, fps = 50) => `
version: 1
fleet: cfg
defaults: { codec: split-q, point: 2, fps: ${fps} }
devices:
  cam: { codec: ${codec}, point: ${point} }
`;

async function setup(text: string): Promise<{ edge: Edge; agent: Agent }> {
  const bundle = await shippedModel();
  const edge = await testEdge({ edgeId: 'edge-cfg', fleet: 'cfg', fleetFile: parseFleet(text) });
  const agent = new Agent({
    url: edge.url,
    fleet: 'cfg',
    deviceId: 'cam',
    bundle,
    codec: 'split-q',
    point: 3,
    source: { source: 'sample', loop: true, limit: 40 },
    fps: 0,
    resultTimeoutMs: 20_000,
  });
  return { edge, agent };
}

async function request(c: MqttClient, op: string, id: string): Promise<OpResponse> {
  const topic = deviceOpTopic('cfg', 'cam', 'response', op);
  await c.subscribeAsync(topic, { qos: 1 });
  const answer = new Promise<OpResponse>((resolve) => {
    const on = (t: string, p: Buffer) => {
      const r = JSON.parse(p.toString()) as OpResponse;
      if (t === topic && r.id === id) {
        c.off('message', on);
        resolve(r);
      }
    };
    c.on('message', on);
  });
  await c.publishAsync(deviceOpTopic('cfg', 'cam', 'request', op), JSON.stringify({ id }), {
    qos: 1,
  });
  return answer;
}

/** Start the agent and wait until it runs the config the edge published; its id. */
async function started(edge: Edge, agent: Agent): Promise<string> {
  await agent.start();
  const wanted = edge.configs().get('cam')!.wanted;
  await waitFor(() => edge.configs().get('cam')?.applied === wanted);
  return wanted;
}

test('the agent applies its retained config at connect and a changed one without a restart', async (t) => {
  const { edge, agent } = await setup(fleetText('split-q', 0));
  try {
    const wanted = await started(edge, agent);
    t.like(agent.settings, { codec: 'split-q', point: 0, fps: 50 });
    const run = agent.run();
    await waitFor(() => agent.stats.results >= 5);
    // a new config while frames flow: applied between two frames, nothing lost
    await edge.applyFleet(parseFleet(fleetText('split-fp16', 0, 100)));
    const next = edge.configs().get('cam')!.wanted;
    t.not(next, wanted);
    await waitFor(() => edge.configs().get('cam')?.applied === next);
    t.is(agent.settings.codec, 'split-fp16');
    const stats = await run;
    t.is(stats.results, 40);
    t.is(stats.errors + stats.lost, 0);
    // the retained status names the config it runs
    const watcher = await connectAsync(edge.url);
    const status = new Promise<DeviceStatus>((resolve) =>
      watcher.on('message', (_t, p) => resolve(JSON.parse(p.toString()) as DeviceStatus)),
    );
    await watcher.subscribeAsync(deviceTopic('cfg', 'cam', 'status'), { qos: 1 });
    t.like(await status, { state: 'online', codec: 'split-fp16', configId: next });
    await watcher.endAsync();
  } finally {
    await agent.stop(true);
    await edge.close();
  }
});

test('a config the agent cannot apply is refused with the reason and the old one keeps running', async (t) => {
  const { edge, agent } = await setup(fleetText('split-q', 1));
  try {
    const first = await started(edge, agent);
    // splitfleet's networks are in its own bundle, which this agent cannot load
    await edge.applyFleet(parseFleet(fleetText('splitfleet', 0)));
    await waitFor(() => edge.configs().get('cam')?.refused != null);
    const st = edge.configs().get('cam')!;
    t.is(st.applied, first);
    t.regex(st.refused!, /refused: .*splitfleet/);
    t.like(agent.settings, { codec: 'split-q', point: 1 });
    // an out-of-range point for this codec is refused too
    await edge.applyFleet(parseFleet(fleetText('split-q', 9)));
    await waitFor(() => /point/.test(edge.configs().get('cam')?.refused ?? ''));
    const run = agent.run();
    const stats = await run;
    t.is(stats.results, 40);
  } finally {
    await agent.stop(true);
    await edge.close();
  }
});

test('request/response: ping, get-config, restart-pipeline, and an unknown op', async (t) => {
  const { edge, agent } = await setup(fleetText('split-q', 0));
  const ops = await connectAsync(edge.url);
  try {
    await started(edge, agent);
    const ping = await request(ops, 'ping', 'r1');
    t.like(ping, { status: 'ok', error: null, id: 'r1' });
    const cfg = await request(ops, 'get-config', 'r2');
    t.like(cfg.data, { codec: 'split-q', point: 0, configId: edge.configs().get('cam')!.wanted });
    t.like(await request(ops, 'restart-pipeline', 'r3'), {
      status: 'ok',
      data: { restarted: true },
    });
    const bad = await request(ops, 'reboot', 'r4');
    t.is(bad.status, 'error');
    t.regex(bad.error!, /unknown op "reboot"/);
    const stats = await agent.run(); // still encodes after the restart
    t.is(stats.results, 40);
  } finally {
    await ops.endAsync();
    await agent.stop(true);
    await edge.close();
  }
});

test('a fleet file for another fleet: the edge does not start and leaves no listener open', async (t) => {
  const port = await freePort();
  const metricsPort = await freePort();
  const other = parseFleet(fleetText('split-q', 0).replace('fleet: cfg', 'fleet: elsewhere'));
  await t.throwsAsync(
    testEdge({ fleet: 'cfg', fleetFile: other, port, metricsPort, stateDir: null }),
    { message: /fleet file is for fleet elsewhere, this edge serves cfg/ },
  );
  // every part that started was stopped: the same ports serve a new edge at once
  const edge = await testEdge({ fleet: 'cfg', port, metricsPort });
  try {
    t.is(edge.url, `mqtt://127.0.0.1:${port}`);
    t.is(edge.metricsUrl, `http://127.0.0.1:${metricsPort}`);
  } finally {
    await edge.close();
  }
});
