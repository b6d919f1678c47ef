/** Property-based fuzzing of every network-facing parser (targets.ts), a few thousand
 * cases each in CI; `npm run fuzz` runs 100,000 per target. The frame, OTA and msgpack
 * targets also fail a case whose refusal is slow or whose reason exceeds 1 KiB. */
import test from 'ava';
import fc from 'fast-check';
import { targets } from './targets.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 3000);

test('no parser or decoder crashes on random or damaged input', async (t) => {
  for (const target of await targets()) {
    const r = await fc.check(target.property as fc.IProperty<[unknown]>, {
      numRuns: RUNS,
      seed: 20261126,
    });
    t.false(r.failed, `${target.name}: ${fc.defaultReportMessage(r) ?? ''}`);
  }
});
