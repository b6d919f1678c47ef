/**
 * `splitfleet demo` (= `npm start`): an edge, its broker and simulated devices on the
 * shipped sample, offline (cli/demo.ts). Without --model and --codec it runs the shipped
 * learned codec that shows the product at its best (cli/demo-baselines.ts pickDemoCodec).
 */
import type { Command } from 'commander';
import { loadBundle } from '../../core/model/load.js';
import { DEFAULT_MODEL, resolveBundle, scanZoo } from '../../core/model/zoo.js';
import { int, num, optionsOf } from '../args.js';

export function register(cmd: Command): void {
  cmd
    .option('--frames <n>', 'frames to send in all (0: until stopped with Ctrl-C)', int(0), 300)
    .option('--forever', 'run until stopped with Ctrl-C (= --frames 0)')
    .option('--devices <n>', 'simulated devices', int(1, 64), 3)
    .option(
      '--codec <name>',
      'feature codec (split-q, splitfleet, frankensplit, ...); default: the best shipped learned codec',
    )
    .option('--point <n>', 'codec operating point (default: the best one, or 0)', int(0, 255))
    .option('--fps <n>', 'frames per second per device (0: as fast as possible)', num, 20)
    .option('--workers <n>', 'decoder workers', int(1, 64), 2)
    .option(
      '--model <name>',
      `model name, name@version or bundle folder (default ${DEFAULT_MODEL})`,
    )
    .option('--source <path>', "'sample' or an image folder / archive", 'sample')
    .option('--data <path>', 'the same as --source')
    .option('--host <addr>', 'listen address', '127.0.0.1')
    .option(
      '--port <n>',
      'MQTT TCP port (the default busy: a free one is used)',
      int(0, 65535),
      1883,
    )
    .option(
      '--ws-port <n>',
      'MQTT WebSocket port (the default busy: a free one)',
      int(0, 65535),
      9001,
    )
    .option('--json', 'end with one JSON summary line on stdout')
    .action(async (_o: unknown, c: Command) => {
      const o = optionsOf(c);
      const { runDemo } = await import('../demo.js');
      const { baseOf, pickDemoCodec } = await import('../demo-baselines.js');
      const given = (name: string) => {
        const from = c.getOptionValueSource(name);
        return from !== undefined && from !== 'default';
      };
      const model = o.optStr('model');
      let codec = o.optStr('codec');
      let point = o.optNum('point');
      const { bundles } = await scanZoo();
      const pick = model === undefined && codec === undefined ? pickDemoCodec(bundles) : null;
      if (pick) {
        codec = pick.bundle.manifest.kind === 'codec' ? pick.bundle.manifest.codec.method : codec;
        point ??= pick.point.index;
      }
      codec ??= 'split-q';
      const bundle = pick
        ? await loadBundle(pick.bundle.dir)
        : await resolveBundle(model ?? DEFAULT_MODEL, { codec });
      // the unsplit model the image is sent to: the codec's base, or the model itself
      const m = bundle.manifest;
      const base = m.kind === 'backbone' ? m : (baseOf(m, bundles)?.manifest ?? null);
      const s = await runDemo({
        bundle,
        base: base?.kind === 'backbone' ? base : null,
        frames: o.flag('forever') ? 0 : o.num('frames'),
        devices: o.num('devices'),
        codec,
        point: point ?? 0,
        fps: o.num('fps'),
        workers: o.num('workers'),
        port: o.num('port'),
        wsPort: o.num('wsPort'),
        portsGiven: given('port') || given('wsPort'),
        host: o.str('host'),
        json: o.flag('json'),
        source: o.optStr('data') ?? o.str('source'),
      });
      process.exitCode = s.results + s.errors === s.frames && s.lost === 0 ? 0 : 1;
    });
}
