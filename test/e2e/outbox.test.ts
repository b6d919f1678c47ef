/**
 * The device's persistent outbox over real sockets: frames accepted while the edge is
 * unreachable survive an agent restart and each arrives once, in order; a full outbox
 * drops its oldest unsent frames and counts every drop.
 */
import test from 'ava';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { Agent } from '../../device-agent/agent.js';
import { startEdge } from '../../edge-broker/edge.js';
import { parseResult } from '../../core/wire/messages.js';
import { deviceTopic } from '../../core/wire/topics.js';
import { shippedModel } from '../helpers/model.js';
import { waitFor } from '../helpers/wait.js';
import { freePort } from '../helpers/net.js';

const idsIn = async (dir: string) =>
  (await readdir(dir))
    .filter((n) => n.endsWith('.frame'))
    .sort()
    .map((n) => Number(n.split('-')[1]!.split('.')[0]));

async function offlineAgent(url: string, dir: string, frames: number, maxFrames?: number) {
  return new Agent({
    url,
    fleet: 'ob',
    deviceId: 'cam',
    bundle: await shippedModel(),
    codec: 'split-q',
    point: 2,
    source: { source: 'sample', limit: frames },
    fps: 0,
    reconnectPeriodMs: 200,
    outbox: { dir, maxFrames },
  });
}

test.serial(
  'frames accepted offline survive a restart and each arrives once, in capture order',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'sf-outbox-'));
    const port = await freePort();
    const url = `mqtt://127.0.0.1:${port}`;
    try {
      // no edge yet: the agent accepts frames into its outbox, then is stopped
      const a = await offlineAgent(url, dir, 6);
      await a.start();
      const running = a.run();
      await waitFor(() => a.stats.sent === 6);
      await a.stop(true);
      await running;
      t.is(a.stats.lost, 0);
      const kept = await idsIn(dir);
      t.is(kept.length, 6);

      // the edge comes up; a new agent process (same outbox) sends them first, then its own
      const edge = await startEdge({
        bundles: [await shippedModel()],
        port,
        wsPort: null,
        workers: 1,
      });
      try {
        const watcher = await connectAsync(edge.url);
        const got: number[] = [];
        watcher.on('message', (_t, p) => got.push(parseResult(p)!.frameId));
        await watcher.subscribeAsync(deviceTopic('ob', 'cam', 'result'), { qos: 1 });
        const b = await offlineAgent(url, dir, 2);
        await b.start();
        t.is(b.stats.restored, 6);
        const stats = await b.run();
        t.is(stats.results, 8);
        t.is(stats.errors + stats.lost + stats.dropped, 0);
        await waitFor(() => got.length >= 8);
        await new Promise((r) => setTimeout(r, 200));
        t.deepEqual(got.slice(0, 6), kept, 'the kept frames first, in capture order');
        t.is(new Set(got).size, 8, 'each frame id once');
        t.is(got.length, 8);
        t.deepEqual(await idsIn(dir), [], 'answered frames leave the outbox');
        await b.stop();
        await watcher.endAsync();
      } finally {
        await edge.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
);

test.serial('a full outbox drops its oldest unsent frames and counts each drop', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sf-outbox-'));
  try {
    const a = await offlineAgent(`mqtt://127.0.0.1:${await freePort()}`, dir, 5, 3);
    const accepted: number[] = [];
    a.on('frame', (f) => accepted.push(f.frameId));
    await a.start();
    const running = a.run();
    await waitFor(() => a.stats.sent + a.stats.dropped >= 5 && a.stats.sent === 5);
    await a.stop(true);
    await running;
    t.is(a.stats.dropped, 2);
    const kept = await idsIn(dir);
    t.is(kept.length, 3);
    // the three newest frames stayed
    t.deepEqual(
      accepted.map((id) => id - accepted[0]!),
      [0, 1, 2, 3, 4],
      'frame ids count up from a random start',
    );
    t.deepEqual(kept, accepted.slice(-3));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
