/**
 * `splitfleet models`: the model zoo (its broken bundles too, with why) and the codecs;
 * `models import` and `models split-points` run the Python toolkit's ONNX import
 * (models/splitfleet_models: import_onnx, split_points) with the flags given.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Command } from 'commander';
import { PROJECT_ROOT } from '../../core/paths.js';
import { allCodecs } from '../../core/codec/registry.js';
import { describeSplit } from '../../core/model/manifest.js';
import { scanZoo } from '../../core/model/zoo.js';

/** The Python with the toolkit's packages (torch, onnx): SPLITFLEET_PYTHON or Debian's. */
const PYTHON = process.env.SPLITFLEET_PYTHON ?? '/usr/bin/python3';

/** Run a toolkit module with `args`, its output as ours; resolves with its exit code. */
function toolkit(module: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    // the user's paths stay relative to where they run it; the toolkit comes from models/
    const models = join(PROJECT_ROOT, 'models');
    const path = process.env.PYTHONPATH;
    const p = spawn(PYTHON, ['-m', `splitfleet_models.${module}`, ...args], {
      env: { ...process.env, PYTHONPATH: path ? `${models}:${path}` : models },
      stdio: 'inherit',
    });
    p.once('error', (e) => reject(new Error(`${PYTHON}: ${e.message} (set SPLITFLEET_PYTHON)`)));
    p.once('close', (code) => resolve(code ?? 1));
  });
}

export function register(cmd: Command): void {
  const passThrough = (name: string, module: string, description: string) =>
    cmd
      .command(name)
      .description(`${description} (\`${name} --help\` for its flags)`)
      .helpOption(false)
      .allowUnknownOption()
      .allowExcessArguments()
      .argument('[args...]')
      .action(async (args: string[]) => {
        process.exitCode = await toolkit(module, args);
      });
  passThrough(
    'import',
    'import_onnx',
    'cut an ONNX classifier into head and tail at a tensor and write a bundle any command can serve',
  );
  passThrough(
    'split-points',
    'split_points',
    "list an ONNX model's candidate split tensors with bytes and device/edge MACs",
  );
  cmd.action(async () => {
    const say = (line: string) => process.stdout.write(`${line}\n`);
    const { bundles, broken } = await scanZoo();
    for (const { manifest: m } of bundles) {
      say(
        `model ${m.name}@${m.version} (id ${m.modelId}): ${m.arch}, split after ${describeSplit(m)}, top-1 ${(m.accuracy.top1 * 100).toFixed(2)}% on ${m.accuracy.samples} ${m.accuracy.split} samples`,
      );
      if (m.kind !== 'codec') continue;
      for (const p of m.codec.points) {
        say(
          `  codec ${m.codec.id} ${m.codec.method} point ${p.index}=${p.label}: top-1 ${(p.top1 * 100).toFixed(2)}%, ` +
            `${(p.bitsPerImage / 8).toFixed(1)} B/image (ideal), device ${p.deviceMacs} MACs`,
        );
      }
    }
    const points = (c: { points: readonly { index: number; label: string }[] }) =>
      c.points.map((p) => `${p.index}=${p.label}`).join(' ');
    for (const b of broken) say(`broken bundle ${b.dir}: ${b.reason}`);
    const codecs = allCodecs();
    for (const c of codecs.filter((x) => x.kind === 'feature'))
      say(`codec ${c.id} ${c.name} v${c.version}: ${points(c)}`);
    for (const c of codecs.filter((x) => x.kind === 'image'))
      say(`input codec ${c.id} ${c.name} v${c.version}: ${points(c)}`);
  });
}
