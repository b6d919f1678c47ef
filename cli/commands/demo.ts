/**
 * `splitfleet demo` (= `npm start`): an edge, its broker and simulated devices on the
 * shipped sample, offline (cli/demo.ts).
 */
import type { Command } from 'commander';
import { DEFAULT_MODEL, resolveBundle } from '../../core/model/zoo.js';
import { int, num, optionsOf } from '../args.js';

export function register(cmd: Command): void {
  cmd
    .option('--frames <n>', 'frames to send in all', int(1), 300)
    .option('--devices <n>', 'simulated devices', int(1, 64), 3)
    .option('--codec <name>', 'feature codec (split-q, aecnn, frankensplit, ...)', 'split-q')
    .option('--point <n>', 'codec operating point', int(0, 255), 0)
    .option('--fps <n>', 'frames per second per device (0: as fast as possible)', num, 20)
    .option('--workers <n>', 'decoder workers', int(1, 64), 2)
    .option('--model <name>', 'model name, name@version or bundle folder', DEFAULT_MODEL)
    .option('--source <path>', "'sample' or an image folder / archive", 'sample')
    .option('--host <addr>', 'listen address', '127.0.0.1')
    .option('--port <n>', 'MQTT TCP port (busy: a free one is used)', int(0, 65535), 1883)
    .option('--ws-port <n>', 'MQTT WebSocket port', int(0, 65535), 9001)
    .option('--json', 'end with one JSON summary line on stdout')
    .action(async (_o: unknown, c: Command) => {
      const o = optionsOf(c);
      const { runDemo } = await import('../demo.js');
      const codec = o.str('codec');
      const s = await runDemo({
        bundle: await resolveBundle(o.str('model'), { codec }),
        frames: o.num('frames'),
        devices: o.num('devices'),
        codec,
        point: o.num('point'),
        fps: o.num('fps'),
        workers: o.num('workers'),
        port: o.num('port'),
        wsPort: o.num('wsPort'),
        host: o.str('host'),
        json: o.flag('json'),
        source: o.str('source'),
      });
      process.exitCode = s.results + s.errors === s.frames && s.lost === 0 ? 0 : 1;
    });
}
