/**
 * Fleet configs over real MQTT: the edge publishes each device's effective config
 * retained; the agent applies it without a restart and acknowledges it, or refuses it
 * with the reason and keeps running the old one, and the edge shows it. The edge refuses
 * a file it cannot serve; an operator's set-config is checked, kept and applied.
 * Request/response commands to a device.
 */
import test from 'ava';
import { connectAsync, type MqttClient } from 'mqtt';
import { Agent } from '../../device-agent/agent.js';
import type { Edge } from '../../edge-broker/edge.js';
import { testEdge } from '../helpers/edge.js';
import { parseFleet } from '../../fleet-config/load.js';
import type { DeviceStatus, OpResponse } from '../../core/wire/messages.js';
import { deviceOpTopic, deviceTopic, edgeOpTopic } from '../../core/wire/topics.js';
import { request } from '../../core/wire/rpc.js';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { runCli } from '../helpers/cli.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

async function deviceRequest(c: MqttClient, op: string, id: string): Promise<OpResponse> {
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

test('a config the agent cannot apply is refused with the reason, shown in the device table, and the old one keeps running', async (t) => {
  const { edge, agent } = await setup(fleetText('split-q', 1));
  try {
    const first = await started(edge, agent);
    // the source is set when the agent starts: a config cannot change it
    await edge.applyFleet(
      parseFleet(fleetText('split-q', 1).replace('cam: {', 'cam: { source: /data/x.tar.gz,')),
    );
    await waitFor(() => edge.configs().get('cam')?.refused != null);
    const st = edge.configs().get('cam')!;
    t.is(st.applied, first);
    t.regex(st.refused!, /refused: source "\/data\/x.tar.gz" differs/);
    t.like(agent.settings, { codec: 'split-q', point: 1 });
    const row = edge.devices().find((d) => d.device === 'cam')!;
    t.like(row, { state: 'online', inFleetFile: true, refused: st.refused });
    t.is(row.wanted!.configId, st.wanted);
    t.not(row.wanted!.configId, first);
    t.like(row.running, { configId: first, codec: 'split-q', point: 1 });
    const stats = await agent.run();
    t.is(stats.results, 40);
  } finally {
    await agent.stop(true);
    await edge.close();
  }
});

test('the edge refuses a fleet file naming a bundle it does not serve or a point its codec lacks, and keeps the configs in force', async (t) => {
  const edge = await testEdge({
    edgeId: 'edge-cfg',
    fleet: 'cfg',
    fleetFile: parseFleet(fleetText('split-q', 1)),
  });
  try {
    const before = edge.configs().get('cam')!.wanted;
    // splitfleet's networks are in its own bundle, which this edge does not serve
    await t.throwsAsync(edge.applyFleet(parseFleet(fleetText('splitfleet', 0))), {
      message:
        /devices\.cam\.codec: no bundle serves model "resnet9w05-cifar10" with codec "splitfleet"; this edge .*has resnet9w05-cifar10@2/,
    });
    await t.throwsAsync(edge.applyFleet(parseFleet(fleetText('split-q', 9))), {
      message: /devices\.cam\.point: codec split-q has no operating point 9 \(has 0, 1, 2, 3\)/,
    });
    t.is(edge.configs().get('cam')!.wanted, before);
  } finally {
    await edge.close();
  }
});

test('set-config: an operator change is checked like the file, kept beside it, and applied by the device', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sf-set-'));
  const overridesFile = join(dir, 'fleet.yaml.overrides.json');
  const bundle = await shippedModel();
  const edge = await testEdge({
    edgeId: 'edge-cfg',
    fleet: 'cfg',
    fleetFile: parseFleet(fleetText('split-q', 1)),
    overridesFile,
  });
  const agent = new Agent({
    url: edge.url,
    fleet: 'cfg',
    deviceId: 'cam',
    bundle,
    codec: 'split-q',
    point: 3,
    source: { source: 'sample', loop: true, limit: 10 },
    fps: 0,
    resultTimeoutMs: 20_000,
  });
  const ops = await connectAsync(edge.url);
  const setConfig = async (body: Record<string, unknown>) =>
    request(ops, edgeOpTopic('cfg', 'edge-cfg', 'request', 'set-config'), body);
  try {
    await started(edge, agent);
    const ok = await setConfig({ device: 'cam', set: { codec: 'split-fp16', point: 0 } });
    t.like(ok, { status: 'ok', data: { devices: ['cam'], persisted: overridesFile } });
    const wanted = edge.configs().get('cam')!.wanted;
    await waitFor(() => edge.configs().get('cam')?.applied === wanted);
    t.like(agent.settings, { codec: 'split-fp16', point: 0 });
    t.deepEqual(edge.devices().find((d) => d.device === 'cam')!.wanted!.overridden, [
      'codec',
      'point',
    ]);
    t.deepEqual(JSON.parse(await readFile(overridesFile, 'utf8')), {
      version: 1,
      groups: {},
      devices: { cam: { codec: 'split-fp16', point: 0 } },
    });
    // checked like the fleet file: nothing changes, nothing is kept
    const bad = await setConfig({ device: 'cam', set: { codec: 'split-q', point: 9 } });
    t.is(bad.status, 'error');
    t.regex(
      bad.error!,
      /devices\.cam\.point: codec split-q has no operating point 9 \(has 0, 1, 2, 3\)/,
    );
    const nobody = await setConfig({ device: 'nobody', set: { fps: 1 } });
    t.regex(nobody.error!, /fleet cfg has no device "nobody"; devices: cam/);
    t.is(edge.configs().get('cam')!.wanted, wanted);
    // null removes the override: the file's settings come back
    const back = await setConfig({ device: 'cam', set: { codec: null, point: null } });
    t.is(back.status, 'ok');
    await waitFor(() => agent.settings.codec === 'split-q' && agent.settings.point === 1);
    t.deepEqual(JSON.parse(await readFile(overridesFile, 'utf8')).devices, {});
    t.is((await agent.run()).results, 10);
  } finally {
    await ops.endAsync();
    await agent.stop(true);
    await edge.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('an offline status keeps the settings the device last ran, not the ones of its will', async (t) => {
  const { edge, agent } = await setup(fleetText('split-fp16', 0));
  const watcher = await connectAsync(edge.url);
  try {
    const wanted = await started(edge, agent);
    await waitFor(
      () => edge.devices().find((d) => d.device === 'cam')?.running?.codec === 'split-fp16',
    );
    const birth = edge.devices().find((d) => d.device === 'cam')!;
    // the will the agent left at connect: its start-up settings (split-q, point 3)
    const will: DeviceStatus = {
      state: 'offline',
      seq: birth.seq!,
      ts: Date.now(),
      model: birth.model!,
      codec: 'split-q',
      point: 3,
      configId: null,
    };
    await watcher.publishAsync(deviceTopic('cfg', 'cam', 'status'), JSON.stringify(will), {
      qos: 1,
      retain: true,
    });
    await waitFor(() => edge.devices().find((d) => d.device === 'cam')?.online === false);
    const row = edge.devices().find((d) => d.device === 'cam')!;
    t.like(row, { state: 'offline', codec: 'split-fp16', point: 0, configId: wanted });
    t.like(row.running, { codec: 'split-fp16', point: 0, configId: wanted });
  } finally {
    await watcher.endAsync();
    await agent.stop(true);
    await edge.close();
  }
});

test('request/response: ping, get-config, restart-pipeline, and an unknown op', async (t) => {
  const { edge, agent } = await setup(fleetText('split-q', 0));
  const ops = await connectAsync(edge.url);
  try {
    await started(edge, agent);
    const ping = await deviceRequest(ops, 'ping', 'r1');
    t.like(ping, { status: 'ok', error: null, id: 'r1' });
    const cfg = await deviceRequest(ops, 'get-config', 'r2');
    t.like(cfg.data, { codec: 'split-q', point: 0, configId: edge.configs().get('cam')!.wanted });
    t.like(await deviceRequest(ops, 'restart-pipeline', 'r3'), {
      status: 'ok',
      data: { restarted: true },
    });
    const bad = await deviceRequest(ops, 'reboot', 'r4');
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

test('splitfleet edge refuses to start on a missing fleet file, a broken one, or a point its codec lacks', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sf-start-'));
  try {
    const start = (file: string) =>
      runCli(['edge', '--fleet-file', file, '--port', '0', '--no-ws', '--no-metrics'], {
        timeoutMs: 120_000,
      });
    const missing = await start(join(dir, 'missing.yaml'));
    t.is(missing.code, 1);
    t.regex(missing.stderr, /missing\.yaml:1:1: cannot read: ENOENT/);
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, fleetText('split-q', 9));
    const outOfRange = await start(bad);
    t.is(outOfRange.code, 1);
    t.regex(
      outOfRange.stderr,
      /bad\.yaml:6:\d+: devices\.cam\.point: codec split-q has no operating point 9 \(has 0, 1, 2, 3\)/,
    );
    await writeFile(bad, fleetText('split-q', 1).replace('fleet: cfg', 'fleet: [cfg'));
    const broken = await start(bad);
    t.is(broken.code, 1);
    t.regex(broken.stderr, /bad\.yaml:\d+:\d+: YAML: /);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
