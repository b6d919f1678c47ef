/** What `splitfleet bench rate` runs: the rate bench (rate.ts) on the codecs asked for. */
import type { Bundle } from '../core/model/load.js';
import type { Manifest } from '../core/model/manifest.js';
import { resolveBundle, scanZoo } from '../core/model/zoo.js';
import type { OptionValues } from '../cli/args.js';
import { benchRate, rateMarkdown, rateTable } from './rate.js';
import { writePlot } from './plot.js';

/** Whether a learned codec's bundle classifies like `model`: the same labels in the same
 * order and the same input size (a codec trained around that model or its twin). */
function fits(codec: Manifest, model: Manifest): boolean {
  const same = (a: readonly unknown[], b: readonly unknown[]) =>
    a.length === b.length && a.every((x, i) => x === b[i]);
  return (
    same(codec.labels, model.labels) && same(codec.preprocessing.size, model.preprocessing.size)
  );
}

/** The learned-codec bundles `--codecs` names: zoo names or folders, 'all' (those that
 * fit the model) or 'none'. A named one that does not fit the model is an error. */
async function codecBundles(names: string[], model: Manifest): Promise<Bundle[]> {
  if (names.includes('none')) return [];
  if (!names.includes('all')) {
    const named = await Promise.all(names.map((n) => resolveBundle(n)));
    for (const b of named) {
      if (!fits(b.manifest, model))
        throw new Error(
          `--codecs: ${b.manifest.name}@${b.manifest.version} has other labels or input size than ${model.name}@${model.version}`,
        );
    }
    return named;
  }
  const { bundles, broken } = await scanZoo();
  for (const b of broken)
    process.stderr.write(`bundle ${b.dir} is broken, left out: ${b.reason}\n`);
  const codecs = bundles.map((b) => b.manifest).filter((m) => m.kind === 'codec' && fits(m, model));
  return Promise.all(codecs.map((m) => resolveBundle(`${m.name}@${m.version}`)));
}

export async function runRate(o: OptionValues): Promise<void> {
  const model = await resolveBundle(o.str('model'));
  const bundles = await codecBundles(o.strs('codecs'), model.manifest);
  const r = await benchRate({
    data: o.str('data'),
    bundle: model,
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
