/**
 * Requests from the network never end a process: an edge op or a device op that is
 * unknown, oddly named or unreadable gets an error answer on its response topic, and the
 * process keeps serving. Devices ignore retained requests (a retained one would otherwise
 * be replayed at every restart).
 *
 * An unhandled rejection in this process fails the test file (ava), so "the process
 * survived" is asserted by the test file completing, and by a normal request answered
 * after the bad ones.
 */
import test from 'ava';
import { connectAsync, type MqttClient } from 'mqtt';
import { Agent } from '../../device-agent/agent.js';
import type { Edge } from '../../edge-broker/edge.js';
import { testEdge } from '../helpers/edge.js';
import { shippedModel } from '../helpers/model.js';
import { waitFor } from '../helpers/wait.js';

let edge: Edge;
let agent: Agent;
let client: MqttClient;
const seen: { topic: string; body: Record<string, unknown> }[] = [];

test.before(async () => {
  edge = await testEdge({ edgeId: 'edge-s', fleet: 'sec' });
  agent = new Agent({
    url: edge.url,
    fleet: 'sec',
    deviceId: 'cam',
    bundle: await shippedModel(),
    codec: 'split-q',
    point: 2,
    source: { source: 'sample', loop: true, limit: 1 },
  });
  await agent.start();
  client = await connectAsync(edge.url, { reconnectPeriod: 0 });
  await client.subscribeAsync(
    ['splitfleet/+/edge/+/response/+', 'splitfleet/+/device/+/response/+'],
    {
      qos: 1,
    },
  );
  client.on('message', (topic, payload) => {
    try {
      seen.push({ topic, body: JSON.parse(payload.toString('utf8')) as Record<string, unknown> });
    } catch {
      seen.push({ topic, body: { unreadable: payload.toString('utf8') } });
    }
  });
});
test.after.always(async () => {
  await client?.endAsync();
  await agent?.stop(true);
  await edge?.close();
});

/** Publish a request and wait for the answer on the response topic of the same op. */
async function ask(topic: string, body: string, id: string): Promise<Record<string, unknown>> {
  const from = seen.length;
  await client.publishAsync(topic, body, { qos: 1 });
  const response = topic.replace('/request/', '/response/');
  let hit: Record<string, unknown> | undefined;
  await waitFor(() => {
    hit = seen
      .slice(from)
      .find((m) => m.topic === response && (m.body.id === id || id === ''))?.body;
    return hit !== undefined;
  }, 10_000);
  return hit!;
}

const EDGE = 'splitfleet/sec/edge/edge-s';
const DEVICE = 'splitfleet/sec/device/cam';

test.serial('an unknown edge op with an invalid name gets an error answer', async (t) => {
  const r = await ask(`${EDGE}/request/Jobs`, '{"id":"e1"}', 'e1');
  t.is(r.status, 'error');
  t.regex(String(r.error), /unknown op "Jobs"/);
  const ok = await ask(`${EDGE}/request/jobs`, '{"id":"e2"}', 'e2');
  t.is(ok.status, 'ok');
});

test.serial(
  'edge ops: a body that is not an object, or a malformed spec, gets an error',
  async (t) => {
    const r = await ask(`${EDGE}/request/rollout`, '{"id":"e3","spec":{"waves":"x"}}', 'e3');
    t.is(r.status, 'error');
    const n = await ask(`${EDGE}/request/jobs`, '[1,2', '');
    t.is(n.status, 'error');
    t.regex(String(n.error), /not a JSON object/);
  },
);

test.serial('an edge op of a fleet id that is not valid gets an error answer', async (t) => {
  const r = await ask('splitfleet/no%20such/edge/edge-s/request/jobs', '{"id":"e4"}', 'e4');
  t.is(r.status, 'error');
});

test.serial('an unknown device op gets an error answer; the agent keeps serving', async (t) => {
  const r = await ask(`${DEVICE}/request/PING`, '{"id":"d1"}', 'd1');
  t.is(r.status, 'error');
  t.regex(String(r.error), /unknown op "PING"/);
  const ok = await ask(`${DEVICE}/request/ping`, '{"id":"d2"}', 'd2');
  t.is(ok.status, 'ok');
});

test.serial('a device ignores retained requests', async (t) => {
  // stored as the broker would store a retained request (the ACL refuses retaining
  // requests from clients; the edge's own publish is not checked)
  await agent.stop(true);
  await edge.broker.publish(`${DEVICE}/request/ping`, Buffer.from('{"id":"r1"}'), true);
  agent = new Agent(agent.options);
  await agent.start();
  const ok = await ask(`${DEVICE}/request/ping`, '{"id":"d3"}', 'd3');
  t.is(ok.status, 'ok');
  t.false(seen.some((m) => m.body.id === 'r1'));
  await edge.broker.publish(`${DEVICE}/request/ping`, Buffer.alloc(0), true); // clear
});
