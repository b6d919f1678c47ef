/**
 * Bundles over the air are named by the edge's config message and fetched by the device:
 * a name or version that is not the registry's rule is refused before the device touches
 * its file system.
 */
import test from 'ava';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BundleUpdater } from '../../device-agent/updater.js';
import { checkBundleRef, isBundleName } from '../../core/model/bundle.js';
import type { BundleRef, FetchRequest } from '../../core/protocol/ota.js';

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
