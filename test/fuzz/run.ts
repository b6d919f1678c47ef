/**
 * `npm run fuzz [-- RUNS]`: every fuzz target (targets.ts) with RUNS random cases
 * (default 100,000) and a fresh seed; prints one line per target and a total of
 * crashes, and exits 1 if there was any (with the shrunk counterexample).
 */
import fc from 'fast-check';
import { targets } from './targets.js';

const runs = Number(process.argv[2] ?? 100_000);
const seed = Date.now() % 2 ** 31;
let crashes = 0;
for (const target of await targets()) {
  const t0 = performance.now();
  const r = await fc.check(target.property as fc.IProperty<[unknown]>, { numRuns: runs, seed });
  const s = ((performance.now() - t0) / 1000).toFixed(1);
  if (r.failed) {
    crashes++;
    console.log(
      `CRASH ${target.name} after ${r.numRuns} cases (${s} s)\n${fc.defaultReportMessage(r)}`,
    );
  } else {
    console.log(`ok    ${target.name}: ${r.numRuns} cases, 0 crashes (${s} s)`);
  }
}
console.log(`seed ${seed}, ${runs} cases per target: ${crashes} crash(es)`);
process.exitCode = crashes ? 1 : 0;
