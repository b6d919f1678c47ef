/**
 * `bench rate --plot <file>`: the rate–accuracy curves of a RateReport as SVG or PNG.
 * Bytes per sample (framed, log scale) against top-1, one line per method, drawn with
 * Vega-Lite (compiled to Vega and rendered headless); PNG goes through sharp.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { extname } from 'node:path';
import sharp from 'sharp';
import { parse, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { RateReport } from './rate.js';

export function rateSpec(r: RateReport): TopLevelSpec {
  // framed with the wire v2 header where the report has it (older reports: v1)
  const v2 = r.rows.some((row) => row.framedV2Bytes !== undefined);
  const rows = r.rows
    .filter((row) => row.bytesPerSample > 0)
    .map((row) => ({
      method: row.method.replace(/^split-q\d+$/, 'split-q'),
      point: row.point,
      bytes: (v2 ? row.framedV2Bytes : undefined) ?? row.bytesPerSample,
      top1: Math.round(row.accuracy * 10000) / 100,
    }));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `Rate vs accuracy, ${r.model}`,
      subtitle: `${r.samples} CIFAR-10 test images${r.limited ? ' (LIMITED run)' : ''}; dashed: unsplit ${(r.unsplitAccuracy * 100).toFixed(2)}%`,
    },
    width: 640,
    height: 400,
    background: 'white',
    layer: [
      {
        data: { values: rows },
        mark: { type: 'line', point: true },
        encoding: {
          x: {
            field: 'bytes',
            type: 'quantitative',
            scale: { type: 'log' },
            title: `bytes per sample, framed (${v2 ? 'wire v2' : 'wire v1'} header, log scale)`,
          },
          y: {
            field: 'top1',
            type: 'quantitative',
            scale: { zero: false },
            title: 'top-1 (%)',
          },
          // 20 colours and a shape per method: ten colours repeated after ten methods
          color: { field: 'method', type: 'nominal', scale: { scheme: 'tableau20' } },
          shape: { field: 'method', type: 'nominal' },
          order: { field: 'bytes', type: 'quantitative' },
          tooltip: [{ field: 'method' }, { field: 'point' }, { field: 'bytes' }, { field: 'top1' }],
        },
      },
      {
        data: { values: [{ top1: Math.round(r.unsplitAccuracy * 10000) / 100 }] },
        mark: { type: 'rule', strokeDash: [4, 4], color: 'gray' },
        encoding: { y: { field: 'top1', type: 'quantitative' } },
      },
    ],
  };
}

/** Any Vega-Lite spec as SVG, rendered headless (also used by `bench latency`). */
export async function specToSvg(spec: TopLevelSpec): Promise<string> {
  const view = new View(parse(compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

export async function renderSvg(r: RateReport): Promise<string> {
  return specToSvg(rateSpec(r));
}

/** Writes `file` as SVG or PNG (by extension). */
export async function writePlot(r: RateReport, file: string): Promise<void> {
  const svg = await renderSvg(r);
  const ext = extname(file).toLowerCase();
  if (ext === '.svg') await writeFile(file, svg);
  else if (ext === '.png') await sharp(Buffer.from(svg), { density: 144 }).png().toFile(file);
  else throw new Error(`--plot: ${file} must end in .svg or .png`);
}

/** The report in the last line of a saved `bench rate --json` output. */
export async function readRateReport(file: string): Promise<RateReport> {
  const lines = (await readFile(file, 'utf8')).trim().split('\n');
  let r: unknown;
  try {
    r = JSON.parse(lines[lines.length - 1] ?? '');
  } catch {
    throw new Error(`${file}: the last line is not bench rate's JSON`);
  }
  const ok =
    typeof r === 'object' &&
    r !== null &&
    Array.isArray((r as RateReport).rows) &&
    typeof (r as RateReport).unsplitAccuracy === 'number' &&
    typeof (r as RateReport).samples === 'number';
  if (!ok)
    throw new Error(
      `${file}: the last line is not bench rate's JSON (rows, samples, unsplitAccuracy)`,
    );
  return r as RateReport;
}
