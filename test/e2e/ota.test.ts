/**
 * Models over the air, over real MQTT: a config names a bundle of the edge's registry
 * the device lacks; the device fetches it in chunks, asks again for a damaged chunk,
 * resumes a download cut by a restart, and never activates a bundle that fails its
 * sha256.
 */
import test from 'ava';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, type AgentOptions } from '../../device-agent/agent.js';
import type { Edge } from '../../edge-broker/edge.js';
import { resolveBundle, deviceRoles, type Bundle } from '../../core/model/bundle.js';
import { decodeChunk, encodeChunk } from '../../core/wire/ota.js';
import { parseFleet } from '../../fleet-config/load.js';
import { bundleVersion, interceptForward } from '../helpers/bundles.js';
import { testEdge } from '../helpers/edge.js';
import { shippedModel } from '../helpers/model.js';
import { waitFor } from '../helpers/wait.js';

const fleetText = (model: string) => `
version: 1
fleet: ota
defaults: { codec: split-q, point: 2, fps: 20 }
devices:
  cam: { model: "${model}" }
`;

function agentFor(edge: Edge, dir: string, bundle: Bundle, extra: Partial<AgentOptions> = {}) {
  return new Agent({
    url: edge.url,
    fleet: 'ota',
    deviceId: 'cam',
    bundle,
    codec: 'split-q',
    point: 2,
    source: { source: 'sample', loop: true, limit: 400 },
    fps: 20,
    resultTimeoutMs: 20_000,
    resolveBundle: (m, c) => resolveBundle(m, { codec: c }),
    bundles: { dir: join(dir, 'device'), chunkBytes: 16 * 1024 },
    ...extra,
  });
}

/** An edge serving the shipped model and, staged, a copy of it as `version`, with the
 * fleet's camera pinned to that version; `done` removes everything. */
async function otaEdge(version: number) {
  const dir = await mkdtemp(join(tmpdir(), 'sf-ota-'));
  const v2 = await shippedModel();
  const staged = await bundleVersion(v2, join(dir, 'registry'), version);
  const edge = await testEdge({
    edgeId: 'edge-ota',
    fleet: 'ota',
    bundles: [v2],
    staged: [staged],
    fleetFile: parseFleet(fleetText(`resnet9w05-cifar10@${version}`)),
  });
  const done = async () => {
    await edge.close();
    await rm(dir, { recursive: true, force: true });
  };
  return { dir, v2, staged, edge, done };
}

const applied = (edge: Edge) => {
  const s = edge.configs().get('cam');
  return !!s && s.applied === s.wanted;
};

test.serial(
  'a bundle the device lacks is fetched in chunks; damaged chunks are asked for again; the new version runs',
  async (t) => {
    const { dir, v2, staged: v3, edge, done } = await otaEdge(3);
    // damage two chunks on their way to the device (one byte of the data each)
    let damaged = 0;
    interceptForward(edge.broker.aedes, (_id, p) => {
      if (!p.topic.endsWith('/chunk') || damaged >= 2) return p;
      const c = decodeChunk(p.payload as Buffer);
      if ('error' in c || c.file === 'manifest.json') return p;
      const data = Buffer.from(c.data);
      data[500]! ^= 0xff;
      damaged++;
      return { ...p, payload: encodeChunk({ ...c, data }) };
    });
    const agent = agentFor(edge, dir, v2);
    try {
      await agent.start();
      await waitFor(() => applied(edge), 60_000);
      const s = agent.updater!.stats;
      t.is(damaged, 2);
      t.is(s.corruptChunks, 2);
      t.is(s.downloads, 1);
      t.true(s.chunks >= 20, `${s.chunks} chunks`); // manifest + a 375 KB head in 16 KB chunks
      t.is(edge.ota.chunks, s.chunks + 2);
      t.is(agent.settings.bundle.manifest.version, 3);
      t.is(agent.settings.bundle.part, 'device');
      t.is(agent.settings.bundle.manifestSha256, v3.manifestSha256);
      // only the device part travelled: no tail in the device's store
      const files = await readdir(join(dir, 'device', 'resnet9w05-cifar10-v3'));
      t.deepEqual(
        files.sort(),
        [
          'manifest.json',
          ...deviceRoles(v3.manifest).map((r) => v3.manifest.files[r]!.path),
        ].sort(),
      );
      t.false(files.includes(v3.manifest.files.tail!.path));
      const run = agent.run();
      await waitFor(() => agent.stats.results >= 10);
      await agent.stop();
      await run;
      // the edge decoded them with version 3's tail
      t.deepEqual(
        edge.devices().map((d) => d.model),
        ['resnet9w05-cifar10@3'],
      );
      t.is(agent.stats.errors, 0);
    } finally {
      await agent.stop(true);
      await done();
    }
  },
);

test.serial('a download cut by an agent restart resumes where its part file ends', async (t) => {
  const { dir, v2, staged: v3, edge, done } = await otaEdge(3);
  let forwarded = 0;
  let blocked = true;
  interceptForward(edge.broker.aedes, (_id, p) => {
    if (!p.topic.endsWith('/chunk')) return p;
    if (blocked && forwarded >= 8) return null; // the link dies mid-download
    forwarded++;
    return p;
  });
  const first = agentFor(edge, dir, v2, {
    bundles: { dir: join(dir, 'device'), chunkBytes: 16 * 1024, timeoutMs: 60_000 },
  });
  let second: Agent | undefined;
  try {
    await first.start();
    await waitFor(() => forwarded >= 8);
    await new Promise((r) => setTimeout(r, 300));
    t.false(applied(edge));
    await first.stop(true);
    const partial = (await readdir(join(dir, 'device', '.staging'))).length;
    t.is(partial, 1);
    blocked = false;
    second = agentFor(edge, dir, v2);
    await second.start();
    await waitFor(() => applied(edge), 60_000);
    const s = second.updater!.stats;
    t.true(s.resumedBytes >= 4 * 16 * 1024, `resumed ${s.resumedBytes} B`);
    // fewer than the whole device part (every file in 16 KB chunks) travelled again
    let whole = 0;
    for (const r of deviceRoles(v3.manifest)) {
      whole += Math.ceil((await stat(v3.file(r))).size / (16 * 1024));
    }
    t.true(s.chunks < whole, `${s.chunks} of ${whole} chunks after the restart`);
    t.is(second.settings.bundle.manifest.version, 3);
    t.is(second.settings.bundle.manifestSha256, v3.manifestSha256);
  } finally {
    await first.stop(true);
    await second?.stop(true);
    await done();
  }
});

test.serial(
  'a bundle whose file fails its sha256 is refused and never activated; the old model keeps running',
  async (t) => {
    const { dir, v2, staged: v4, edge, done } = await otaEdge(4);
    // the head file on the edge's disk is damaged after the edge loaded it
    const head = v4.file('head');
    const bytes = await readFile(head);
    bytes[bytes.length >> 1]! ^= 0x01;
    await writeFile(head, bytes);
    const agent = agentFor(edge, dir, v2);
    try {
      await agent.start();
      await waitFor(() => edge.configs().get('cam')?.refused != null, 60_000);
      const st = edge.configs().get('cam')!;
      t.regex(st.refused!, /sha256 .* does not match .*not activated/);
      t.not(st.applied, st.wanted);
      t.is(agent.updater!.stats.rejected, 1);
      t.is(agent.settings.bundle.manifest.version, 2);
      t.false((await readdir(join(dir, 'device'))).includes('resnet9w05-cifar10-v4'));
      // frames still flow on the old model
      const run = agent.run();
      await waitFor(() => agent.stats.results >= 5);
      await agent.stop();
      await run;
      t.is(agent.stats.errors, 0);
    } finally {
      await agent.stop(true);
      await done();
    }
  },
);
