/**
 * Learned codecs, Python vs TypeScript: the toolkit's smoke run (synthetic data, tiny
 * networks, all three methods) exports bundles with PyTorch fixtures; here the
 * TypeScript side loads them and must agree: device network symbols (onnxruntime vs
 * PyTorch), bitstreams byte for byte (rans.ts vs rans.py), edge network logits.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../device-agent/agent.js';
import { startEdge } from '../../edge-broker/edge.js';
import { loadBundle } from '../../core/model/load.js';
import { PROJECT_ROOT } from '../../core/paths.js';
import { checkCodecParity } from '../helpers/codec-parity.js';

const PYTHON = process.env.SPLITFLEET_PYTHON ?? '/usr/bin/python3';


let dir = '';
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sf-codec-parity-'));
  const r = spawnSync(PYTHON, ['-W', 'ignore', '-m', 'splitfleet_models.smoke', '--out', dir], {
    cwd: join(PROJECT_ROOT, 'models'),
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (r.status !== 0) throw new Error(`smoke run failed: ${r.stderr || String(r.error)}`);
});
test.after.always(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

for (const method of ['bottlenetpp', 'aecnn', 'frankensplit', 'splitfleet']) {
  test.serial(`${method}: symbols, bitstreams and logits match PyTorch`, (t) =>
    checkCodecParity(
      t,
      join(dir, 'zoo', `tiny-${method}-v1`),
      join(dir, 'fixtures', `tiny-${method}-v1`),
    ),
  );
}

test.serial('learned bundles run the whole path over MQTT, frames of each point answered', async (t) => {
  const bundles = await Promise.all(
    ['bottlenetpp', 'aecnn', 'frankensplit', 'splitfleet'].map((m) => loadBundle(join(dir, 'zoo', `tiny-${m}-v${1}`))),
  );
  // the four tiny bundles share model id 9: serve them one at a time
  for (const b of bundles) {
    const edge = await startEdge({ bundles: [b], port: 0, wsPort: null, workers: 1, edgeId: 'e' });
    try {
      const m = b.manifest;
      if (m.kind !== 'codec') return t.fail();
      for (const p of m.codec.points) {
        const a = new Agent({
          url: edge.url,
          fleet: 'parity',
          deviceId: `dev-${m.codec.method}`,
          bundle: b,
          codec: m.codec.method,
          point: p.index,
          source: { source: 'sample', limit: 6 },
          fps: 0,
          resultTimeoutMs: 20_000,
        });
        await a.start();
        const s = await a.run();
        await a.stop();
        t.is(s.results, 6, `${m.codec.method} point ${p.index}`);
        t.is(s.errors, 0);
      }
      // a frame for a point the bundle does not have is answered with an error
      const bad = new Agent({
        url: edge.url,
        fleet: 'parity',
        deviceId: 'dev-bad',
        bundle: b,
        codec: 'split-q',
        point: 0,
        source: { source: 'sample', limit: 1 },
        fps: 0,
      });
      await t.throwsAsync(bad.start(), { message: /is a .* codec, not split-q/ });
    } finally {
      await edge.close();
    }
  }
});
