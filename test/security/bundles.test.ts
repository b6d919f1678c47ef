/**
 * Bundles over the air are named by the edge's config message and fetched by the device:
 * a name or version that is not the registry's rule is refused before the device touches
 * its file system, and a staged bundle is served only to the devices a rollout or a pin
 * names.
 */
import test from 'ava';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { BundleUpdater } from '../../device-agent/updater.js';
import type { Edge } from '../../edge-broker/edge.js';
import { checkBundleRef, isBundleName, isBundleRef } from '../../core/model/bundle.js';
import {
  decodeChunk,
  OTA_VERSION,
  type BundleRef,
  type Chunk,
  type ChunkError,
  type FetchRequest,
} from '../../core/wire/ota.js';
import { deviceClientId, deviceTopic } from '../../core/wire/topics.js';
import { CONFIG_VERSION, parseConfig } from '../../core/wire/messages.js';
import { parseFleet } from '../../fleet-config/load.js';
import { bundleVersion } from '../helpers/bundles.js';
import { testEdge } from '../helpers/edge.js';
import { shippedModel } from '../helpers/model.js';
import { waitFor } from '../helpers/wait.js';

const SHA = 'a'.repeat(64);

/** Every path under `root` with its kind and size: a picture of the tree to compare. */
async function tree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      const s = await stat(p);
      out.push(`${p.slice(root.length)} ${e.isDirectory() ? 'dir' : s.size}`);
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk(root);
  return out.sort();
}

// refs as a config message from the network may carry them (JSON: any type in any field)
const BAD_REFS: [string, unknown][] = [
  ['a name that climbs out of the store', { name: '../../../x', version: 1, manifestSha256: SHA }],
  ['a name with a slash', { name: 'a/b', version: 1, manifestSha256: SHA }],
  ['an absolute name', { name: '/tmp/x', version: 1, manifestSha256: SHA }],
  ['a name with NUL', { name: 'x\0y', version: 1, manifestSha256: SHA }],
  ['a name starting with a dot', { name: '.x', version: 1, manifestSha256: SHA }],
  ['an upper-case name', { name: 'X', version: 1, manifestSha256: SHA }],
  ['an over-long name', { name: 'x'.repeat(65), version: 1, manifestSha256: SHA }],
  ['a version that climbs', { name: 'x', version: '1/../../../y', manifestSha256: SHA }],
  ['a version as text', { name: 'x', version: '1', manifestSha256: SHA }],
  ['a version 0', { name: 'x', version: 0, manifestSha256: SHA }],
  ['a fractional version', { name: 'x', version: 1.5, manifestSha256: SHA }],
  ['a version out of range', { name: 'x', version: 65536, manifestSha256: SHA }],
  ['a manifest hash that climbs', { name: 'x', version: 1, manifestSha256: '../../../../z' }],
  ['a short manifest hash', { name: 'x', version: 1, manifestSha256: 'abc' }],
  ['no ref at all', null],
];

test('the rule: a name of [a-z0-9.-], 1..64, starting with a letter or digit', (t) => {
  for (const ok of ['resnet9w05-cifar10', 'a', 'a.b-c', 'x'.repeat(64)]) t.true(isBundleName(ok));
  for (const bad of ['', '.', '..', '../x', 'a/b', '/a', 'A', 'a\0', 'x'.repeat(65), 'a b'])
    t.false(isBundleName(bad), bad);
  t.deepEqual(checkBundleRef({ name: 'a', version: 2, manifestSha256: SHA }), {
    name: 'a',
    version: 2,
    manifestSha256: SHA,
  });
});

test('every bad ref fails the rule that message parsers use', (t) => {
  for (const [what, ref] of BAD_REFS) t.false(isBundleRef(ref), what);
  t.true(isBundleRef({ name: 'x', version: 1, manifestSha256: SHA }));
});

for (const [what, ref] of BAD_REFS) {
  test(`the updater refuses ${what} before any file system call`, async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'sf-bundle-ref-'));
    t.teardown(() => rm(root, { recursive: true, force: true }));
    // the store three levels down, so `../../../x` lands inside `root`, where we look
    const store = join(root, 'a', 'b', 'store');
    await mkdir(store, { recursive: true });
    const before = await tree(root);
    const sent: FetchRequest[] = [];
    const updater = new BundleUpdater({ dir: store, timeoutMs: 200, tries: 1 }, (req) => {
      sent.push(req);
      return Promise.resolve();
    });
    t.teardown(() => updater.close());
    const err = await t.throwsAsync(updater.get(ref as BundleRef));
    t.regex(err.message, /bundle ref|bundle name|version|manifest/i);
    t.deepEqual(sent, [], 'nothing was asked of the edge');
    t.deepEqual(await tree(root), before, 'nothing was created, inside the store or out');
  });
}

// --- staged bundles: served only to devices a rollout or a pin names -----------------

interface Fetcher {
  client: MqttClient;
  fetch: (bundle: string) => Promise<Chunk | ChunkError>;
}

/** A bare MQTT client as device `id` of fleet `fleet` that asks for manifest.json. */
async function fetcher(edge: Edge, fleet: string, id: string): Promise<Fetcher> {
  const client = mqtt.connect(edge.url, {
    clientId: deviceClientId(fleet, id),
    reconnectPeriod: 0,
  });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  const answers = new Map<string, Chunk | ChunkError>();
  client.on('message', (_topic, payload) => {
    const c = decodeChunk(payload);
    answers.set(c.id, c);
  });
  await client.subscribeAsync(deviceTopic(fleet, id, 'chunk'), { qos: 1 });
  let n = 0;
  const fetch = async (bundle: string) => {
    const id2 = `req-${++n}`;
    const req: FetchRequest = {
      v: OTA_VERSION,
      id: id2,
      bundle,
      file: 'manifest.json',
      offset: 0,
      length: 1024,
    };
    await client.publishAsync(deviceTopic(fleet, id, 'fetch'), JSON.stringify(req), { qos: 1 });
    await waitFor(() => answers.has(id2));
    return answers.get(id2)!;
  };
  return { client, fetch };
}

test.serial(
  'a staged bundle is served only once a rollout or a pin names the device',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'sf-staged-'));
    const shipped = await shippedModel();
    const staged = await bundleVersion(shipped, join(dir, 'registry'), 7);
    const ref = `${staged.manifest.name}@7`;
    const edge = await testEdge({
      edgeId: 'edge-staged',
      fleet: 'st',
      bundles: [shipped],
      staged: [staged],
      fleetFile: parseFleet(`
version: 1
fleet: st
defaults: { codec: split-q, point: 2 }
devices:
  cam: {}
  pinned: { model: "${ref}" }
  other: {}
`),
    });
    const clients: MqttClient[] = [];
    t.teardown(async () => {
      for (const c of clients) await c.endAsync();
      await edge.close();
      await rm(dir, { recursive: true, force: true });
    });
    const cam = await fetcher(edge, 'st', 'cam');
    const pinned = await fetcher(edge, 'st', 'pinned');
    const other = await fetcher(edge, 'st', 'other');
    clients.push(cam.client, pinned.client, other.client);

    // released bundles: to anyone
    const released = await cam.fetch(`${shipped.manifest.name}@${shipped.manifest.version}`);
    t.false('error' in released, 'a released bundle is served');
    // staged, named for no one but `pinned`
    const refused = await cam.fetch(ref);
    t.true('error' in refused);
    t.regex((refused as ChunkError).error, /staged.*not named for this device/);
    t.false('error' in (await pinned.fetch(ref)), 'the device the fleet file pins gets it');

    // a rollout to `cam` names it for cam, and only for cam
    edge.rollouts.create({ model: ref, devices: ['cam'], applyTimeoutMs: 60_000 });
    await waitFor(() => edge.rollouts.list()[0]?.deployed.includes('cam') ?? false);
    t.false('error' in (await cam.fetch(ref)), 'the rollout names cam: served');
    t.true('error' in (await other.fetch(ref)), 'other is still refused');
  },
);

test('a config naming a bundle or a model that breaks the rule is refused by the parser', (t) => {
  const config = (settings: Record<string, unknown>, bundle?: unknown) =>
    JSON.stringify({
      v: CONFIG_VERSION,
      configId: 'c1',
      fleet: 'f',
      device: 'cam',
      group: null,
      settings: { model: 'resnet9w05-cifar10', codec: 'split-q', point: 0, fps: 5, ...settings },
      ...(bundle === undefined ? {} : { bundle }),
      ts: 1,
    });
  t.truthy(parseConfig(config({})));
  t.truthy(
    parseConfig(config({}, { name: 'resnet9w05-cifar10', version: 2, manifestSha256: SHA })),
  );
  t.is(parseConfig(config({}, { name: '../../../x', version: 1, manifestSha256: SHA })), undefined);
  t.is(parseConfig(config({ model: '/etc' })), undefined);
  t.is(parseConfig(config({ model: '../models/x' })), undefined);
});
