import test from 'ava';
import { resolveMethods } from '../../bench/latency/index.js';

test('bench latency --methods: defaults by name, codec or kind, and any codec point by label', async (t) => {
  const m = await resolveMethods(['webp q75', 'webp q50', 'splitfleet lam=0.01', 'local']);
  t.deepEqual(
    m.map((x) => [x.name, x.kind, x.codec, x.point]),
    [
      ['local', 'local', 'none', 0],
      ['webp q75', 'offload', 'webp', 1],
      ['webp q50', 'offload', 'webp', 2],
      ['splitfleet lam=0.01', 'split', 'splitfleet', 3],
    ],
  );
  t.true((await resolveMethods(['split'])).every((x) => x.kind === 'split'));
  await t.throwsAsync(resolveMethods(['webp q33']), {
    message: /webp has no point q33 \(has q90, q75/,
  });
  await t.throwsAsync(resolveMethods(['nonsense']), { message: /is not a method/ });
});
