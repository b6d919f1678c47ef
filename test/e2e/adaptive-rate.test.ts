/**
 * Adaptive rate over real MQTT (loopback, so the link is fast): with a latency goal in
 * its config the agent climbs from the smallest AECNN point to the most accurate one the
 * edge's bit-rate cap allows, and no further. The shaped-link demo is
 * scripts/adaptive-rate-demo.sh (network namespace + tc netem).
 */
import test from 'ava';
import { Agent } from '../../device-agent/agent.js';
import { resolveBundle } from '../../core/model/bundle.js';
import { parseFleet } from '../../fleet-config/load.js';
import { testEdge } from '../helpers/edge.js';
import { waitFor } from '../helpers/wait.js';

test('a latency goal moves the agent up to the best point under the edge cap', async (t) => {
  const aecnn = await resolveBundle('resnet9w05-cifar10', { codec: 'aecnn' });
  // at 20 frames/s, with ~380 B of MQTT/TCP/IP per frame, a 120 kbit/s cap admits k=8
  // (~239 B frames: 99 kbit/s), not k=16 (~444 B: 132 kbit/s)
  const edge = await testEdge({
    edgeId: 'edge-rate',
    fleet: 'rate',
    bundles: [aecnn],
    fleetFile: parseFleet(`
version: 1
fleet: rate
defaults: { codec: aecnn, point: 0, fps: 20, latencyGoalMs: 250, maxKbps: 120 }
devices:
  cam: {}
`),
  });
  const agent = new Agent({
    url: edge.url,
    fleet: 'rate',
    deviceId: 'cam',
    bundle: aecnn,
    codec: 'aecnn',
    point: 0,
    source: { source: 'sample', loop: true, limit: 100_000 },
    fps: 20,
    resultTimeoutMs: 20_000,
    resolveBundle: (m, c) => resolveBundle(m, { codec: c }),
  });
  try {
    await agent.start();
    const run = agent.run();
    await waitFor(() => agent.settings.point === 3, 60_000);
    await new Promise((r) => setTimeout(r, 5000));
    t.is(agent.settings.point, 3, 'stays under the cap');
    const ups = agent.stats.pointChanges.map((c) => `${c.from}->${c.to}`);
    t.deepEqual(ups, ['0->1', '1->2', '2->3']);
    // the edge sees the point it runs
    await waitFor(() => edge.devices()[0]?.point === 3);
    await agent.stop();
    await run;
    t.is(agent.stats.errors, 0, 'no frame answered with an error');
    t.is(agent.stats.lost, 0, 'no frame lost');
  } finally {
    await agent.stop(true);
    await edge.close();
  }
});
