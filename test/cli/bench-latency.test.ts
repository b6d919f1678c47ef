/**
 * `bench latency --quick` end to end: device and edge in two network namespaces joined
 * by a shaped link (netem, or scripts/linkemu.py where the kernel has none), one
 * profile, one input-offload and one split method. Needs root (namespaces); the edge, the
 * agent and the offload worker run as processes of the CLI from source (bench/child.ts).
 */
import test from 'ava';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  benchLatency,
  DEFAULT_METHODS,
  latencyTable,
  namespacesUnavailable,
  parseProfile,
  writeLatencyPlot,
} from '../../bench/latency/index.js';

const skipReason = namespacesUnavailable();

test('parseProfile reads name:kbps:delay:loss', (t) => {
  t.deepEqual(parseProfile('slow:250:100:0.01'), {
    name: 'slow',
    kbps: 250,
    delayMs: 100,
    loss: 0.01,
  });
  t.throws(() => parseProfile('bad:0:10'));
  t.throws(() => parseProfile('bad:100:10:1.5'));
});

if (skipReason) {
  test.skip(`bench latency over a shaped link (skipped: ${skipReason})`, () => {});
} else {
  test.serial('bench latency --quick: one link, input offload vs split', async (t) => {
    t.timeout(150_000);
    const profile = parseProfile('1mbit-50ms:1000:50:0');
    const methods = DEFAULT_METHODS.filter(
      (m) => m.name === 'webp q75' || m.name === 'splitfleet lam=1.0',
    );
    t.is(methods.length, 2);
    const lines: string[] = [];
    const r = await benchLatency({
      profiles: [profile],
      methods,
      quick: true,
      log: (l) => lines.push(l),
    });
    t.log(lines.join('\n'));
    t.log(latencyTable(r));
    t.true(r.shaper === 'netem' || r.shaper === 'linkemu');
    t.is(r.rows.length, 2);
    for (const row of r.rows) {
      const base = row.probes[0]!;
      t.is(base.fps, 10, row.method);
      t.is(base.results, base.frames, `${row.method}: every frame answered`);
      t.true(base.sustained, `${row.method}: 10 frames/s holds on 1 Mbit/s (${base.why})`);
      // the link's delay is real: no answer comes back faster than one round trip
      t.true(row.p50Ms! >= 2 * profile.delayMs, `${row.method}: p50 ${row.p50Ms} ms`);
      t.true(row.p99Ms! >= row.p50Ms!);
      t.true(row.accuracy !== null && row.accuracy > 0.5, `${row.method}: ${row.accuracy}`);
      // bytes on the wire are IP packets: the frame plus MQTT, TCP and IP headers
      t.true(row.wireUpBytesPerFrame > row.frameBytes + 40, `${row.method} up`);
      t.true(row.wireDownBytesPerFrame > 40, `${row.method} down`);
      t.true(row.maxFps >= 10, `${row.method}: max ${row.maxFps}`);
    }
    const [offload, split] = r.rows;
    t.is(offload!.kind, 'offload');
    t.is(split!.kind, 'split');
    t.true(split!.frameBytes < offload!.frameBytes, 'a split frame is smaller than a WebP image');
    t.truthy(r.goal);
    const dir = await mkdtemp(join(tmpdir(), 'sf-latency-'));
    try {
      const file = join(dir, 'latency.svg');
      await writeLatencyPlot(r, file);
      t.regex(await readFile(file, 'utf8'), /^<svg/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test.serial(
    'bench latency --quick --wire v2 with batches: every frame answered, the batching reported',
    async (t) => {
      t.timeout(150_000);
      const profile = parseProfile('1mbit-50ms:1000:50:0');
      const methods = DEFAULT_METHODS.filter((m) => m.name === 'splitfleet lam=1.0');
      const r = await benchLatency({
        profiles: [profile],
        methods,
        quick: true,
        wire: 'v2',
        // at 10 frames/s a batch of 4 fills within 400 ms
        batch: { maxFrames: 4, maxDelayMs: 400 },
      });
      t.deepEqual(r.batch, { maxFrames: 4, maxDelayMs: 400 });
      t.regex(latencyTable(r), /wire v2, batches of 4/);
      const base = r.rows[0]!.probes[0]!;
      t.is(base.results, base.frames, 'every frame answered');
      // frames wait for their batch: the median answer comes later than one round trip
      t.true(r.rows[0]!.p50Ms! >= 2 * profile.delayMs);
    },
  );
}
