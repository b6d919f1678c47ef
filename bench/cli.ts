/**
 * `splitfleet bench ...`: the benchmarks' commands. The CLI loads this module only when a
 * bench command runs, and each command loads its benchmark only when it runs; nothing of
 * the product imports bench/.
 */
import { Option, type Command } from 'commander';
import { DEFAULT_MODEL } from '../core/model/zoo.js';
import { batchOf, batchOptions, int, num, OptionValues } from '../cli/args.js';

const log = (line: string) => process.stderr.write(`${line}\n`);
const print = (text: string) => process.stdout.write(text);
const values = (c: Command) => new OptionValues(c.opts(), `splitfleet bench ${c.name()}`);

export function register(bench: Command): void {
  bench
    .command('engines')
    .description(
      'the device encoder (head + codec encode) on each inference engine and thread count: ms per frame, memory, maxAbsDiff vs onnx',
    )
    .option('--model <name>', 'model name, name@version or bundle folder', DEFAULT_MODEL)
    .option('--codec <name>', 'feature codec (split-q, splitfleet, aecnn, ...)', 'split-q')
    .option('--point <n>', 'codec operating point', int(0, 255), 0)
    .option('--frames <n>', 'timed frames per engine and thread count', int(1, 100_000), 200)
    .option('--warmup <n>', 'untimed frames first', int(0, 10_000), 20)
    .option('--threads <n...>', 'thread counts', ['1', '2'])
    .option('--compare <n>', 'images whose head outputs are compared with onnx', int(1, 500), 50)
    .option('--json', 'print one JSON object on the last line')
    .action(async (_o: unknown, c: Command) => {
      const o = values(c);
      const { benchEngines, enginesTable } = await import('./engines.js');
      const r = await benchEngines({
        model: o.str('model'),
        codec: o.str('codec'),
        point: o.num('point'),
        frames: o.num('frames'),
        warmup: o.num('warmup'),
        threads: o.strs('threads').map((t) => int(1, 64)(t)),
        compare: o.num('compare'),
        log,
      });
      print(enginesTable(r));
      if (o.flag('json')) print(JSON.stringify(r) + '\n');
    });

  bench
    .command('throughput')
    .description(
      'edge results/s and latency through the broker vs the raw decoder pool, and broker fan-in vs mosquitto',
    )
    .option('--devices <n>', 'simulated devices', int(1, 19_000), 100)
    .option('--seconds <n>', 'seconds per measured step', int(1, 3600), 10)
    .option('--model <name>', 'model name, name@version or bundle folder', 'splitfleet-cifar10')
    .option('--codec <name>', 'feature codec', 'splitfleet')
    .option('--point <n>', 'codec operating point', int(0, 255), 0)
    .option('--workers <n>', 'decoder processes', int(1, 64), 2)
    .option('--max-batch <n>', 'frames per tail batch at most', int(1, 1024), 8)
    .option('--max-wait <ms>', 'how long an idle decoder waits for a batch to fill', num, 2)
    .option('--p99-bound <ms>', 'a step counts when its p99 latency stays under this', num, 50)
    .option('--loads <shares...>', 'offered load per step, as shares of the raw rate', [
      '0.5',
      '0.7',
      '0.8',
      '0.9',
    ])
    .option('--json', 'print one JSON object on the last line')
    .action(async (_o: unknown, c: Command) => {
      const o = values(c);
      const { benchThroughput, throughputTable } = await import('./throughput.js');
      const r = await benchThroughput({
        devices: o.num('devices'),
        seconds: o.num('seconds'),
        model: o.str('model'),
        codec: o.str('codec'),
        point: o.num('point'),
        workers: o.num('workers'),
        maxBatch: o.num('maxBatch'),
        maxWaitMs: o.num('maxWait'),
        p99BoundMs: o.num('p99Bound'),
        loads: o.strs('loads').map((x) => num(x)),
        log,
      });
      print(throughputTable(r));
      if (o.flag('json')) print(JSON.stringify(r) + '\n');
    });

  bench
    .command('connections')
    .description(
      'many simulated devices on one edge process, with presence: edge memory and devices online',
    )
    .option('--count <n>', 'simulated device connections', int(1, 19_000), 10_000)
    .option('--json', 'print one JSON object on the last line')
    .action(async (_o: unknown, c: Command) => {
      const o = values(c);
      const { benchConnections } = await import('./connections.js');
      const r = await benchConnections({ count: o.num('count'), log });
      print(
        `${r.connected}/${r.connections} connected in ${r.connectSeconds} s; ${r.devicesOnline} devices online, ` +
          `${r.devicesOnlineAfterCut} after cutting them all (wills); edge RSS ${r.edgeRssMiB.idle} MiB idle, ` +
          `${r.edgeRssMiB.connected} MiB connected (${r.perConnectionKiB} KiB per connection; goal < 1 GiB: ${r.goalRssUnder1GiB ? 'met' : 'NOT met'})\n`,
      );
      if (o.flag('json')) print(JSON.stringify(r) + '\n');
      process.exitCode = r.devicesOnline === r.connections && r.devicesOnlineAfterCut === 0 ? 0 : 1;
    });

  bench
    .command('rate')
    .description('bytes per sample vs top-1 for every codec and input-offload baseline')
    .addOption(
      new Option(
        '--data <path>',
        "test images: CIFAR-10 (archive or folder), or any ImageFolder of the model's labels",
      )
        .env('SPLITFLEET_CIFAR10')
        .makeOptionMandatory(),
    )
    .option('--limit <n>', 'only the first n test samples (a quick run, not a result)', int(1))
    .option(
      '--model <name>',
      'model (name, name@version or bundle folder; --zoo DIR)',
      DEFAULT_MODEL,
    )
    .option('--threads <n>', 'inference threads', int(1, 64), 2)
    .option('--batch <n>', 'samples per inference batch', int(1, 4096), 200)
    .option(
      '--codecs <names...>',
      "learned-codec bundles to include (zoo names or folders; 'all': those with the model's labels and size; 'none')",
      ['all'],
    )
    .option(
      '--methods <names...>',
      'only these methods (unsplit always runs), e.g. jpeg-scan aecnn',
    )
    .option('--timing <n>', 'samples timed one by one with one thread (0: none)', int(0), 100)
    .option('--json', 'print one JSON object on the last line')
    .option('--markdown', 'print the table as Markdown')
    .option('--plot <file>', 'write the rate-accuracy curves (.svg or .png)')
    .action(async (_o: unknown, c: Command) => {
      const { runRate } = await import('./rate-command.js');
      await runRate(values(c));
    });

  batchOptions(
    bench
      .command('latency')
      .description(
        'one device over shaped links (namespaces; netem or scripts/linkemu.py): local vs input offload vs split, latency, wire bytes, max frame rate',
      )
      .option(
        '--profiles <specs...>',
        'links as name:kbps:delayMs[:loss] (default: 10mbit-20ms, 1mbit-50ms, 250kbit-100ms-1%)',
      )
      .option(
        '--methods <names...>',
        'only these methods: by name, codec or kind (e.g. local webp splitfleet), or "<codec> <point>" (e.g. "webp q50", "splitfleet lam=0.01")',
      )
      .option('--fps <n>', 'frame rate of the latency runs', num, 10)
      .option('--seconds <n>', 'seconds per run and per probe', num)
      .option('--probes <n>', 'probes of the max-rate search per method and link', int(0, 20))
      .option('--max-fps <n>', 'ceiling of the max-rate search', num, 150)
      .option('--source <path>', 'images (default: the shipped sample)')
      .addOption(
        new Option('--shaper <kind>', 'link shaper')
          .choices(['auto', 'netem', 'linkemu'])
          .default('auto'),
      )
      .addOption(
        new Option(
          '--wire <format>',
          "the agents' wire format: v1, or v2 (lean frames, compact answers)",
        )
          .choices(['v1', 'v2'])
          .default('v1'),
      ),
  )
    .option('--quick', 'short runs, one probe (a smoke run, not a result)')
    .option('--json', 'print one JSON object on the last line')
    .option('--plot <file>', 'write latency and max rate against link rate (.svg)')
    .action(async (_o: unknown, c: Command) => {
      const o = values(c);
      const { benchLatency, latencyTable, parseProfile, resolveMethods, writeLatencyPlot } =
        await import('./latency/index.js');
      const names = o.optStrs('methods');
      const methods = names ? await resolveMethods(names) : undefined;
      const wire = o.choice('wire', ['v1', 'v2']);
      const batch = batchOf(o);
      if (batch !== null && wire !== 'v2')
        throw new Error('--batch-frames is for wire v2 (--wire v2)');
      const r = await benchLatency({
        profiles: o.optStrs('profiles')?.map(parseProfile),
        methods,
        fps: o.num('fps'),
        seconds: o.optNum('seconds'),
        probes: o.optNum('probes'),
        maxFps: o.num('maxFps'),
        source: o.optStr('source'),
        shaper: o.choice('shaper', ['auto', 'netem', 'linkemu']),
        quick: o.flag('quick'),
        wire,
        batch,
        log,
      });
      print(latencyTable(r) + '\n');
      const plot = o.optStr('plot');
      if (plot) {
        await writeLatencyPlot(r, plot);
        log(`plot written to ${plot}`);
      }
      if (o.flag('json')) print(JSON.stringify(r) + '\n');
    });

  bench
    .command('plot')
    .description('redraw the rate-accuracy curves of a saved `bench rate --json` output')
    .argument('<report>', "a file whose last line is bench rate's JSON")
    .requiredOption('--plot <file>', 'the picture to write (.svg or .png)')
    .action(async (report: string, _o: unknown, c: Command) => {
      const plot = values(c).str('plot');
      const { readRateReport, writePlot } = await import('./plot.js');
      await writePlot(await readRateReport(report), plot);
      log(`plot written to ${plot}`);
    });
}
