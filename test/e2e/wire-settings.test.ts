/**
 * Wire settings from the fleet file, over real sockets: a device the file sets to wire v2
 * (with a top-2 and batching) gets compact answers and sends frames whose header is at
 * most 8 B, while a wire v1 device on the same edge keeps its JSON results; an agent
 * running wire v1 refuses a config that asks for v2, with the reason the edge shows.
 */
import test from 'ava';
import { connectAsync } from 'mqtt';
import { Agent } from '../../device-agent/agent.js';
import type { Edge } from '../../edge-broker/edge.js';
import { parseFleet } from '../../fleet-config/load.js';
import { parseAnswerChannel } from '../../core/wire/context.js';
import { decodeV2, isV2 } from '../../core/wire/frame-v2.js';
import { MAX_PAYLOAD_BYTES } from '../../core/wire/frame.js';
import { parseResult } from '../../core/wire/messages.js';
import { parseTopic } from '../../core/wire/topics.js';
import { testEdge } from '../helpers/edge.js';
import { shippedModel } from '../helpers/model.js';
import { waitFor } from '../helpers/wait.js';

const FLEET = 'wires';

const FLEET_FILE = `
version: 1
fleet: ${FLEET}
defaults: { codec: split-q, point: 0, fps: 100 }
devices:
  lean: { wire: v2, topk: 2, batch: { maxFrames: 4, maxDelayMs: 50 } }
  old: { wire: v1 }
  stuck: { wire: v2 }
`;

async function agent(edge: Edge, deviceId: string, frames: number, wire: 'v1' | 'v2') {
  return new Agent({
    url: edge.url,
    fleet: FLEET,
    deviceId,
    bundle: await shippedModel(),
    codec: 'split-q',
    point: 0,
    source: { source: 'sample', loop: true, limit: frames },
    fps: 0,
    maxInFlight: 8,
    resultTimeoutMs: 60_000,
    wire,
  });
}

/** Start the agent and wait until the edge shows it runs (or refused) its config. */
async function configured(edge: Edge, a: Agent): Promise<void> {
  await a.start();
  await waitFor(() => {
    const st = edge.configs().get(a.deviceId);
    return st !== undefined && (st.applied === st.wanted || st.refused !== null);
  });
}

const channel = (topic: string) => {
  const p = parseTopic(topic);
  return p?.kind === 'device' ? `${p.deviceId}/${p.channel}` : topic;
};

test('the fleet file sets a device to wire v2 (compact answers, top-2, batches, header <= 8 B) while a v1 device keeps JSON results; a v1 agent refuses wire v2 with the reason', async (t) => {
  const edge = await testEdge({
    edgeId: 'edge-wires',
    fleet: FLEET,
    fleetFile: parseFleet(FLEET_FILE),
    maxFrameBytes: 2 * MAX_PAYLOAD_BYTES,
  });
  // a frame cap over the default raises the broker's PUBLISH cap with it
  t.is(edge.broker.access.maxPayloadBytes, 2 * MAX_PAYLOAD_BYTES + 256 + 4096);
  const wire = await connectAsync(edge.url, { protocolVersion: 4 });
  const msgs: { topic: string; payload: Buffer }[] = [];
  wire.on('message', (topic, payload) => msgs.push({ topic, payload }));
  await wire.subscribeAsync(`splitfleet/${FLEET}/device/+/+`, { qos: 1 });
  const lean = await agent(edge, 'lean', 40, 'v2');
  const old = await agent(edge, 'old', 10, 'v1');
  const stuck = await agent(edge, 'stuck', 1, 'v1');
  try {
    await Promise.all([configured(edge, lean), configured(edge, old), configured(edge, stuck)]);
    t.is(edge.configs().get('lean')!.refused, null);
    t.is(edge.configs().get('old')!.refused, null);
    t.deepEqual(lean.wire!.settings, { topk: 2, batch: { maxFrames: 4, maxDelayMs: 50 } });

    const refused = edge.devices().find((d) => d.device === 'stuck')!;
    t.regex(refused.refused ?? '', /wire v2: the agent runs wire v1.*restart it with --wire v2/);
    t.is(stuck.settings.configId, null, 'the refused config is not run');

    const [sLean, sOld] = await Promise.all([lean.run(), old.run()]);
    t.is(sLean.results, 40);
    t.is(sLean.errors + sLean.lost, 0);
    t.is(sOld.results, 10);
    t.is(sOld.errors + sOld.lost, 0);
    const c = lean.wire!.counts;
    t.is(c.v1 + c.v2, 40);
    t.true(c.v2 > 0 && c.batches < c.v2, `${c.v2} v2 frames in ${c.batches} packets`);

    const of = (ch: string) => msgs.filter((m) => channel(m.topic) === ch);
    // the full results (still published for dashboards) name each frame's payload size
    await waitFor(() => of('lean/result').length >= 40 && of('old/result').length >= 10);
    const results = of('lean/result').map((m) => parseResult(m.payload)!);
    const sizes = new Set(results.map((r) => r.payloadBytes));
    let v2Frames = 0;
    for (const m of of('lean/f')) {
      t.true(isV2(m.payload));
      const p = decodeV2(m.payload);
      const payloads = p.entries.reduce((n, e) => n + e.payload.byteLength, 0);
      for (const e of p.entries) t.true(sizes.has(e.payload.byteLength));
      const header = (m.payload.byteLength - payloads) / p.entries.length;
      t.true(header <= 8, `${header} B of header per frame`);
      v2Frames += p.entries.length;
    }
    t.is(v2Frames, c.v2);

    const answers = of('lean/a')
      .map((m) => ({ size: m.payload.byteLength, m: parseAnswerChannel(m.payload) }))
      .filter((x) => x.m.kind === 'answer');
    t.is(answers.length, 40);
    for (const a of answers) {
      t.true(a.size <= 32, `${a.size} B`);
      t.is(a.m.kind === 'answer' ? a.m.answer.more?.length : -1, 1, 'top-2 from the fleet file');
    }

    t.is(of('old/result').length, 10, 'the v1 device keeps its JSON results');
    t.is(of('old/a').length, 0);
    t.is(of('old/f').length, 0);
  } finally {
    await Promise.all([lean.stop(true), old.stop(true), stuck.stop(true)]);
    await wire.endAsync();
    await edge.close();
  }
});

test("the fleet file's edge.fullResults: off, compact answers only; on again after an edit, full results too", async (t) => {
  const file = (full: boolean) => `
version: 1
fleet: ${FLEET}
edge: { fullResults: ${full} }
defaults: { codec: split-q, point: 0, fps: 100, wire: v2 }
devices:
  quiet: {}
`;
  const edge = await testEdge({
    edgeId: 'edge-quiet',
    fleet: FLEET,
    fleetFile: parseFleet(file(false)),
  });
  const wire = await connectAsync(edge.url, { protocolVersion: 4 });
  const msgs: { topic: string; payload: Buffer }[] = [];
  wire.on('message', (topic, payload) => msgs.push({ topic, payload }));
  await wire.subscribeAsync(`splitfleet/${FLEET}/device/+/+`, { qos: 1 });
  const of = (ch: string) => msgs.filter((m) => channel(m.topic) === ch);
  const first = await agent(edge, 'quiet', 8, 'v2');
  try {
    await configured(edge, first);
    const s1 = await first.run();
    t.is(s1.results, 8);
    await first.stop();
    t.is(of('quiet/result').length, 0, 'no full result while the file turns them off');
    // the edit applies while the edge runs
    await edge.applyFleet(parseFleet(file(true)));
    const second = await agent(edge, 'quiet', 6, 'v2');
    await configured(edge, second);
    const s2 = await second.run();
    t.is(s2.results, 6);
    await second.stop();
    await waitFor(() => of('quiet/result').length >= 6);
    t.is(of('quiet/a').filter((m) => parseAnswerChannel(m.payload).kind === 'answer').length, 14);
  } finally {
    await first.stop(true);
    await wire.endAsync();
    await edge.close();
  }
});
