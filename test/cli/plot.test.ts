import test from 'ava';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import type { RateReport, RateRow } from '../../bench/rate.js';
import { readRateReport, renderSvg, writePlot } from '../../bench/plot.js';

const row = (method: string, point: string, bytes: number, accuracy: number): RateRow => ({
  method,
  point,
  payloadBytes: bytes - 24,
  bytesPerSample: bytes,
  wireBytes: bytes + 53,
  ratioVsSplitTensor: 65536 / bytes,
  accuracy,
  drop: 0.9 - accuracy,
  encoderFlops: 0,
  encoderMsPerSample: 0,
  decoderMsPerSample: 0,
});

const report: RateReport = {
  dataset: 'synthetic',
  samples: 10,
  timingSamples: 0,
  limited: true,
  model: 'm@1',
  splitPoint: 'layer1',
  splitShape: [64, 16, 16],
  splitTensorBytes: 65536,
  unsplitAccuracy: 0.9,
  rows: [
    row('unsplit', 'local', 0, 0.9),
    row('webp', 'q75', 350, 0.89),
    row('webp', 'q10', 180, 0.78),
    row('frankensplit', 'lam=0.1', 60, 0.885),
  ],
};

test('the plot names every method with bytes, and skips the zero-byte unsplit row', async (t) => {
  const svg = await renderSvg(report);
  t.true(svg.startsWith('<svg'));
  t.true(svg.includes('webp') && svg.includes('frankensplit'));
  t.true(svg.includes('LIMITED run'));
  t.false(/>unsplit</.test(svg));
});

test('--plot writes SVG or PNG by extension and refuses others', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sf-plot-'));
  try {
    await writePlot(report, join(dir, 'p.svg'));
    t.regex(await readFile(join(dir, 'p.svg'), 'utf8'), /^<svg/);
    await writePlot(report, join(dir, 'p.png'));
    const meta = await sharp(join(dir, 'p.png')).metadata();
    t.is(meta.format, 'png');
    t.true((meta.width ?? 0) > 600);
    await t.throwsAsync(writePlot(report, join(dir, 'p.gif')), { message: /svg or .png/ });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('bench plot reads the JSON last line of a saved bench rate output, and refuses others', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sf-plot-'));
  try {
    const saved = join(dir, 'bench.txt');
    await writeFile(saved, `| a table |\n${JSON.stringify(report)}\n`);
    t.deepEqual(await readRateReport(saved), JSON.parse(JSON.stringify(report)) as RateReport);
    await writeFile(join(dir, 'bad.txt'), '| only a table |\n');
    await t.throwsAsync(readRateReport(join(dir, 'bad.txt')), { message: /bench rate's JSON/ });
    await writeFile(join(dir, 'other.txt'), '{"rows": 3}\n');
    await t.throwsAsync(readRateReport(join(dir, 'other.txt')), { message: /rows, samples/ });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
