/** `splitfleet models`: the model zoo (its broken bundles too, with why) and the codecs. */
import type { Command } from 'commander';
import { allCodecs } from '../../core/codec/registry.js';
import { describeSplit } from '../../core/model/manifest.js';
import { scanZoo } from '../../core/model/zoo.js';

export function register(cmd: Command): void {
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
