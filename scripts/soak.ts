/**
 * Soak: N simulated devices at F frames/s for S seconds against one edge process, the
 * edge's memory sampled every 10 s (`npm run soak -- [devices] [fps] [seconds]`, default
 * 1000 10 600). Each device is a raw MQTT connection replaying real frames of the shipped
 * SplitFleet codec (encoded once, new frame ids), as an agent would send them, and
 * counting its answers: results, and explicit errors (an overloaded edge refuses frames
 * with `overloaded`; nothing may go unanswered). Prints one line per sample and a JSON
 * summary; exits 1 if any frame got no answer.
 */
import type { Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { bundleFor } from '../core/model/bundle.js';
import { frameSource } from '../device-agent/source.js';
import { HeadPipeline } from '../device-agent/pipeline.js';
import { decodeFrame, encodeFrame, type Frame } from '../core/protocol/frame.js';
import { deviceTopic } from '../core/protocol/topics.js';
import { rawClient, rssMiB, startEdgeProcess } from '../cli/bench-connections.js';

const [devices = 1000, fps = 10, seconds = 600] = process.argv.slice(2).map(Number);
const SAMPLE_MS = 10_000;

// real frames: the shipped splitfleet codec, point 0, on the first 32 sample images
const bundle = await bundleFor('resnet9w05-cifar10', 'splitfleet');
const head = await HeadPipeline.create(bundle, 'splitfleet', 0);
const frames: Frame[] = [];
for await (const s of frameSource({ source: 'sample', limit: 32 })) {
  frames.push(decodeFrame((await head.encode(s, 1)).frame));
}
await head.close();

const { child: edge, mqtt: url } = await startEdgeProcess(
  ['--model', 'splitfleet-cifar10', '--no-metrics', '--workers', '2', '--fleet', 'soak'],
  // SOAK_EDGE_NODE_ARGS: node flags for the edge (e.g. --cpu-prof)
  process.env.SOAK_EDGE_NODE_ARGS?.split(' ').filter(Boolean) ?? [],
);

const sent = { n: 0 };
const got = { results: 0, errors: 0, overloaded: 0 };
const pending = new Map<string, number>();

/**
 * One simulated device as a raw MQTT 3.1.1 connection (mqtt-packet): light enough that
 * 1,000 of them at 10 frames/s leave the CPU to the edge. Frames go at QoS 1 (as agents
 * send them; the PUBACKs are read and ignored), answers come at QoS 0.
 */
async function device(i: number): Promise<Socket> {
  const id = `s${i}`;
  const sock = await rawClient(url, `soak-${id}`, {
    onPacket: (p) => {
      if (p.cmd !== 'publish') return;
      const r = JSON.parse(p.payload.toString()) as { frameId: number; code?: string };
      if (!pending.delete(`${id}/${r.frameId}`)) return;
      if (p.topic.endsWith('/result')) got.results++;
      else {
        got.errors++;
        if (r.code === 'overloaded') got.overloaded++;
      }
    },
  });
  sock.on('error', () => undefined);
  sock.write(
    mqttPacket.generate({
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: [
        { topic: deviceTopic('soak', id, 'result'), qos: 0 },
        { topic: deviceTopic('soak', id, 'error'), qos: 0 },
      ],
    }),
  );
  return sock;
}
const socks: Socket[] = [];
for (let i = 0; i < devices; i += 100) {
  socks.push(
    ...(await Promise.all(
      Array.from({ length: Math.min(100, devices - i) }, (_, k) => device(i + k)),
    )),
  );
}
await new Promise((r) => setTimeout(r, 1000)); // the subscriptions
const t0 = Date.now();
let messageId = 1;
const timers = socks.map((sock, i) => {
  let next = i * 1000;
  return setInterval(() => {
    const f = frames[(next++ + i) % frames.length]!;
    const frameId = (i * 1_000_000 + next) >>> 0;
    pending.set(`s${i}/${frameId}`, Date.now());
    sent.n++;
    messageId = (messageId % 65535) + 1;
    sock.write(
      mqttPacket.generate({
        cmd: 'publish',
        topic: deviceTopic('soak', `s${i}`, 'features'),
        payload: Buffer.from(encodeFrame({ ...f, frameId, captureTs: Date.now() })),
        qos: 1,
        messageId,
        retain: false,
        dup: false,
      }),
    );
  }, 1000 / fps);
});
console.log(
  `soak: ${devices} devices x ${fps} frames/s for ${seconds} s against ${url} (edge pid ${edge.pid})`,
);
const samples: { t: number; rssMiB: number; sent: number; results: number; errors: number }[] = [];
const sample = async () => {
  const s = {
    t: Math.round((Date.now() - t0) / 1000),
    rssMiB: await rssMiB(edge.pid!),
    sent: sent.n,
    ...{ results: got.results, errors: got.errors },
  };
  samples.push(s);
  console.log(
    `t=${s.t}s edge RSS ${s.rssMiB} MiB, sent ${s.sent}, results ${s.results}, errors ${s.errors} (overloaded ${got.overloaded}), unanswered ${pending.size}`,
  );
};
const sampler = setInterval(() => void sample(), SAMPLE_MS);
await new Promise((r) => setTimeout(r, seconds * 1000));
for (const t of timers) clearInterval(t);
// every frame sent gets its answer (or the run fails)
const end = Date.now() + 60_000;
while (pending.size > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 500));
clearInterval(sampler);
await sample();
const rss = samples.map((s) => s.rssMiB);
const summary = {
  devices,
  fps,
  seconds,
  sent: sent.n,
  results: got.results,
  errors: got.errors,
  overloaded: got.overloaded,
  unanswered: pending.size,
  resultsPerSecond: Math.round(got.results / seconds),
  edgeRssMiB: { first: rss[0], max: Math.max(...rss), last: rss[rss.length - 1] },
};
console.log(JSON.stringify(summary));
for (const s of socks) s.destroy();
edge.kill('SIGTERM');
process.exit(pending.size === 0 ? 0 : 1);
