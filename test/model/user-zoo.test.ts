/**
 * The user's zoo (SPLITFLEET_ZOO, set by `--zoo DIR` on every command): its bundles are
 * listed and resolved beside the shipped ones by every call that does not name its own
 * zoo; on a name both have, the user's bundle hides the shipped ones; a user bundle
 * with a shipped bundle's model id and version is broken (frames name models by id).
 */
import test from 'ava';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BundleError } from '../../core/model/manifest.js';
import { bundleFor, resolveBundle, scanZoo, zooDirs, ZOO_ENV } from '../../core/model/zoo.js';
import { ZOO_DIR } from '../../core/paths.js';
import { runCli } from '../helpers/cli.js';
import { MODEL, shippedModel } from '../helpers/model.js';

let zoo = '';
let shippedVersion = 0;
let shippedCodecId = 0;

/** A copy of the shipped backbone in the user zoo, with manifest fields changed. */
async function copyAs(folder: string, fields: Record<string, unknown>): Promise<void> {
  const b = await shippedModel();
  await cp(b.dir, join(zoo, folder), { recursive: true });
  const path = join(zoo, folder, 'manifest.json');
  const m = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  await writeFile(path, JSON.stringify({ ...m, ...fields }));
}

test.before(async () => {
  zoo = await mkdtemp(join(tmpdir(), 'sf-user-zoo-'));
  const b = await shippedModel();
  shippedVersion = b.manifest.version;
  const aecnn = (await scanZoo(ZOO_DIR)).bundles.find(
    (x) => x.manifest.kind === 'codec' && x.manifest.codec.method === 'aecnn',
  )!.manifest;
  shippedCodecId = aecnn.modelId;
  // a user bundle, one that replaces the shipped backbone (an older version even), and
  // one whose id and version a shipped bundle of another name has
  await copyAs('mycams-v1', { name: 'mycams', modelId: 100, version: 1, labels: ['a', 'b'] });
  await copyAs(`${MODEL}-v1`, { version: 1, modelId: 101 });
  await copyAs('clash-v1', { name: 'clash', modelId: aecnn.modelId, version: aecnn.version });
  process.env[ZOO_ENV] = zoo;
});
test.after.always(async () => {
  delete process.env[ZOO_ENV];
  if (zoo) await rm(zoo, { recursive: true, force: true });
});

test.serial('the user zoo comes first, then the shipped one', (t) => {
  t.deepEqual(zooDirs(), [zoo, ZOO_DIR]);
});

test.serial(
  'scanZoo lists user bundles beside the shipped ones; a user name hides the shipped one',
  async (t) => {
    const { bundles, broken, hidden } = await scanZoo();
    const names = bundles.map((b) => `${b.manifest.name}@${b.manifest.version}`);
    t.true(names.includes('mycams@1'));
    t.true(names.includes(`${MODEL}@1`));
    t.false(names.includes(`${MODEL}@${shippedVersion}`));
    t.true(bundles.some((b) => b.manifest.kind === 'codec' && b.dir.startsWith(ZOO_DIR)));
    t.deepEqual(
      hidden.map((h) => [h.manifest.name, h.manifest.version, h.by]),
      [[MODEL, shippedVersion, zoo]],
    );
    const clash = broken.find((b) => b.dir === join(zoo, 'clash-v1'));
    t.truthy(clash);
    t.regex(clash!.reason, new RegExp(`model id ${shippedCodecId} .* is taken by`));
    t.false(names.includes('clash@1'));
  },
);

test.serial('resolveBundle and bundleFor find user bundles without naming the zoo', async (t) => {
  const mine = await resolveBundle('mycams');
  t.is(mine.dir, join(zoo, 'mycams-v1'));
  t.deepEqual(mine.manifest.labels, ['a', 'b']);
  t.is((await bundleFor('mycams@1', 'split-q')).dir, mine.dir);
  // the user's version of a shipped name serves, even though it is older
  t.is((await resolveBundle(MODEL)).dir, join(zoo, `${MODEL}-v1`));
  await t.throwsAsync(resolveBundle(`${MODEL}@${shippedVersion}`), { instanceOf: BundleError });
  // the shipped learned codecs still serve with the default model
  t.is((await resolveBundle(MODEL, { codec: 'aecnn' })).manifest.kind, 'codec');
  await t.throwsAsync(resolveBundle('clash'), {
    instanceOf: BundleError,
    message: /clash-v1 is broken: model id/,
  });
  // a zoo named by the caller is the only one read
  t.is((await resolveBundle(MODEL, { zoo: ZOO_DIR })).manifest.version, shippedVersion);
});

test.serial('`splitfleet models --zoo DIR` lists the user bundles', async (t) => {
  delete process.env[ZOO_ENV]; // the flag alone says where the zoo is
  try {
    const r = await runCli(['models', '--zoo', zoo]);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /model mycams@1 \(id 100\)/);
    t.regex(r.stdout, /broken bundle .*clash-v1: .*model id/);
    const env = await runCli(['models']);
    t.notRegex(env.stdout, /mycams/);
  } finally {
    process.env[ZOO_ENV] = zoo;
  }
});
