import test from 'ava';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BundleError } from '../../core/model/manifest.js';
import {
  DEFAULT_MODEL,
  pickBundle,
  resolveBundle,
  scanZoo,
  type Candidate,
} from '../../core/model/zoo.js';
import { ZOO_DIR } from '../../core/paths.js';
import { shippedModel } from '../helpers/model.js';

let zoo: string;
test.before(async () => {
  zoo = await mkdtemp(join(tmpdir(), 'sf-zoo-'));
  const b = await shippedModel();
  const v = b.manifest.version;
  // the shipped backbone as it is, as version v+1, and two broken folders
  await cp(b.dir, join(zoo, `${DEFAULT_MODEL}-v${v}`), { recursive: true });
  const next = join(zoo, `${DEFAULT_MODEL}-v${v + 1}`);
  await cp(b.dir, next, { recursive: true });
  const m = JSON.parse(await readFile(join(next, 'manifest.json'), 'utf8')) as { version: number };
  m.version = v + 1;
  await writeFile(join(next, 'manifest.json'), JSON.stringify(m));
  await mkdir(join(zoo, 'mangled-v1'));
  await writeFile(join(zoo, 'mangled-v1', 'manifest.json'), '{ not json');
  await cp(b.dir, join(zoo, 'invalid-v1'), { recursive: true });
  const bad = JSON.parse(await readFile(join(zoo, 'invalid-v1', 'manifest.json'), 'utf8')) as {
    name: string;
    modelId: number;
  };
  bad.name = 'invalid';
  bad.modelId = 0;
  await writeFile(join(zoo, 'invalid-v1', 'manifest.json'), JSON.stringify(bad));
  await mkdir(join(zoo, 'not-a-bundle'));
});
test.after.always(async () => {
  await rm(zoo, { recursive: true, force: true });
});

test('scanZoo reports broken bundles with the reason instead of dropping them', async (t) => {
  const { bundles, broken } = await scanZoo(zoo);
  t.deepEqual(
    bundles.map((b) => b.manifest.version),
    [2, 3],
  );
  t.deepEqual(broken.map((b) => b.dir).sort(), [join(zoo, 'invalid-v1'), join(zoo, 'mangled-v1')]);
  t.regex(broken.find((b) => b.dir.endsWith('invalid-v1'))!.reason, /modelId/);
  t.regex(broken.find((b) => b.dir.endsWith('mangled-v1'))!.reason, /JSON/);
});

test('one resolver: name, name@version, a folder, a learned codec with the default model', async (t) => {
  t.is((await resolveBundle(DEFAULT_MODEL, { zoo })).manifest.version, 3);
  t.is((await resolveBundle(`${DEFAULT_MODEL}@2`, { zoo })).manifest.version, 2);
  const folder = join(zoo, `${DEFAULT_MODEL}-v2`);
  t.is((await resolveBundle(folder)).dir, folder);
  const device = await resolveBundle(DEFAULT_MODEL, { zoo, part: 'device' });
  t.is(device.part, 'device');
  // the shipped zoo: a learned codec is its own bundle
  const aecnn = await resolveBundle(DEFAULT_MODEL, { codec: 'aecnn', zoo: ZOO_DIR });
  t.is(aecnn.manifest.kind, 'codec');
  t.is(aecnn.codec?.name, 'aecnn');
  // a feature codec of the registry keeps the backbone
  t.is((await resolveBundle(DEFAULT_MODEL, { codec: 'split-q', zoo })).manifest.version, 3);
});

test('a broken bundle is said to be broken, an unknown one unknown', async (t) => {
  await t.throwsAsync(resolveBundle('invalid', { zoo }), {
    instanceOf: BundleError,
    message: /invalid-v1 is broken: .*modelId/,
  });
  await t.throwsAsync(resolveBundle('mangled@1', { zoo }), {
    instanceOf: BundleError,
    message: /mangled-v1 is broken/,
  });
  const e = await t.throwsAsync(resolveBundle('nothing-here', { zoo }), {
    instanceOf: BundleError,
    message: /unknown model "nothing-here"/,
  });
  t.regex(e.message, new RegExp(`${DEFAULT_MODEL}@2, ${DEFAULT_MODEL}@3`));
  t.regex(e.message, /broken: .*invalid-v1/);
});

test('the rule: newest released version, staged only when named with its version', async (t) => {
  const { bundles } = await scanZoo(zoo);
  t.is(bundles.length, 2);
  const released: Candidate = bundles[0]!;
  const pinned: Candidate = { ...bundles[1]!, staged: true };
  const staged = [released, pinned];
  t.is(pickBundle(staged, DEFAULT_MODEL), released);
  t.is(pickBundle(staged, `${DEFAULT_MODEL}@3`), pinned);
  t.is(pickBundle(staged, `${DEFAULT_MODEL}@4`), null);
  t.is(pickBundle(staged, 'other'), null);
  // a learned codec with the default model: that codec's bundle, none here
  t.is(pickBundle(staged, DEFAULT_MODEL, 'frankensplit'), null);
  // 'toString' is no learned codec
  t.is(pickBundle(staged, DEFAULT_MODEL, 'toString'), released);
});
