/** What `splitfleet bench rate` runs: the rate bench (rate.ts) on the codecs asked for. */
import type { Bundle } from '../core/model/load.js';
import { resolveBundle, scanZoo } from '../core/model/zoo.js';
import type { OptionValues } from '../cli/args.js';
import { benchRate, rateMarkdown, rateTable } from './rate.js';
import { writePlot } from './plot.js';

/** The learned-codec bundles `--codecs` names: zoo names or folders, 'all' or 'none'. */
async function codecBundles(names: string[]): Promise<Bundle[]> {
  if (names.includes('none')) return [];
  if (!names.includes('all')) return Promise.all(names.map((n) => resolveBundle(n)));
  const { bundles, broken } = await scanZoo();
  for (const b of broken)
    process.stderr.write(`bundle ${b.dir} is broken, left out: ${b.reason}\n`);
  const codecs = bundles.map((b) => b.manifest).filter((m) => m.kind === 'codec');
  return Promise.all(codecs.map((m) => resolveBundle(`${m.name}@${m.version}`)));
}

export async function runRate(o: OptionValues): Promise<void> {
  const bundles = await codecBundles(o.strs('codecs'));
  const r = await benchRate({
    data: o.str('data'),
    bundle: await resolveBundle(o.str('model')),
    codecBundles: bundles,
    timingSamples: o.num('timing'),
    methods: o.optStrs('methods'),
    limit: o.optNum('limit'),
    threads: o.num('threads'),
    batch: o.num('batch'),
    progress: process.stderr.isTTY,
  });
  process.stdout.write((o.flag('markdown') ? rateMarkdown(r) : rateTable(r)) + '\n');
  const plot = o.optStr('plot');
  if (plot) {
    await writePlot(r, plot);
    process.stderr.write(`plot written to ${plot}\n`);
  }
  if (o.flag('json')) {
    const { dataset, samples, unsplitAccuracy, rows } = r;
    process.stdout.write(
      JSON.stringify({
        dataset,
        samples,
        timingSamples: r.timingSamples,
        limited: r.limited,
        model: r.model,
        splitPoint: r.splitPoint,
        splitShape: r.splitShape,
        unsplitAccuracy,
        rows,
      }) + '\n',
    );
  }
}
