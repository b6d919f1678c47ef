/**
 * The shipped learned-codec bundles (models/zoo) against the PyTorch fixtures their
 * export wrote (test/fixtures/<bundle>/): symbols, bitstreams byte for byte, logits.
 */
import test from 'ava';
import { join } from 'node:path';
import { scanZoo } from '../../core/model/zoo.js';
import { PROJECT_ROOT, ZOO_DIR } from '../../core/paths.js';
import { checkCodecParity } from '../helpers/codec-parity.js';

const zoo = await scanZoo(ZOO_DIR);
const codecs = zoo.bundles.map((b) => b.manifest).filter((m) => m.kind === 'codec');

test('the shipped zoo has no broken bundle', (t) => {
  t.deepEqual(zoo.broken, []);
});

test('the zoo ships a bundle of every learned method', (t) => {
  const methods = new Set(codecs.map((m) => (m.kind === 'codec' ? m.codec.method : '')));
  for (const m of ['bottlenetpp', 'aecnn', 'frankensplit', 'splitfleet']) t.true(methods.has(m), m);
});

for (const m of codecs) {
  const name = `${m.name}-v${m.version}`;
  test(`${name}: symbols, bitstreams and logits match PyTorch`, (t) =>
    checkCodecParity(t, join(ZOO_DIR, name), join(PROJECT_ROOT, 'test', 'fixtures', name)),
  );
}
