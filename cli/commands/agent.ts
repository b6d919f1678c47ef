/**
 * `splitfleet agent`: a device agent (source -> head -> codec -> MQTT) until its source
 * ends or a signal stops it (the summary printed either way). It prints a progress line
 * every 10 s and a summary at the end; `--verbose` (or LOG_LEVEL=debug) adds a line per
 * result; with `--json`, only the summary, as one JSON line (AgentSummary).
 */
import { Option, type Command } from 'commander';
import { DEFAULT_FLEET } from '../../fleet-config/schema.js';
import { readFile } from 'node:fs/promises';
import { ENGINE_NAMES, type EngineName } from '../../core/engine/engine.js';
import { DEFAULT_MODEL, resolveBundle } from '../../core/model/zoo.js';
import { percentile, round } from '../../core/util/stats.js';
import {
  SETTING_MAX_TOPK,
  WIRE_FORMATS,
  type BatchSetting,
  type WireFormat,
} from '../../core/wire/messages.js';
import { applyAgentConfig } from '../agent-config.js';
import { batchOf, batchOptions, brokerUrl, int, num, OptionValues } from '../args.js';
import { stopOnSignal } from '../signals.js';

export interface AgentCliOptions {
  device: string;
  url: string;
  fleet: string;
  model: string;
  codec: string;
  point: number;
  source: { source: string; split: 'train' | 'test'; loop: boolean; limit?: number };
  fps: number;
  threads: number;
  engine: EngineName;
  username?: string;
  password?: string;
  ca?: string;
  outbox?: { dir: string; maxFrames: number };
  bundleDir?: string;
  tagFrames: boolean;
  window: number;
  resultTimeoutMs: number;
  latencyGoalMs: number | null;
  maxKbps: number | null;
  wire: WireFormat;
  /** Wire v2 batching; null: every frame alone. */
  batch: BatchSetting | null;
  topk: number;
  json: boolean;
  verbose: boolean;
}

/** How often the agent prints its progress line (not with --json). */
const PROGRESS_MS = 10_000;

/** The summary the agent prints last (`--json`: alone, as one JSON line). */
export interface AgentSummary {
  sent: number;
  results: number;
  errors: number;
  lost: number;
  accuracy: number | null;
  bytesPerFrame: number;
  /** End-to-end latency; `quartersP50`: the median of each quarter of the answers in the
   * order they came (null for an empty quarter): a rising queue shows as a rising row. */
  latencyMs: { p50: number | null; p99: number | null; quartersP50: (number | null)[] };
  headMsP50: number | null;
  fps: number;
  skipped: number;
  reconnects: number;
  dropped: number;
  restored: number;
  ota: unknown;
  point: number;
  pointChanges: number;
}

export function agentOptions(raw: Readonly<Record<string, unknown>>): AgentCliOptions {
  const o = new OptionValues(raw, 'splitfleet agent');
  const device = o.optStr('device');
  if (!device) throw new Error('--device (or "device:" in --config) is required');
  const outbox = o.optStr('outbox');
  return {
    device,
    url: o.str('url'),
    fleet: o.str('fleet'),
    model: o.str('model'),
    codec: o.str('codec'),
    point: o.num('point'),
    source: {
      source: o.str('source'),
      split: o.choice('split', ['train', 'test']),
      loop: o.flag('loop'),
      limit: o.optNum('frames'),
    },
    fps: o.num('fps'),
    threads: o.num('threads'),
    engine: o.choice('engine', ENGINE_NAMES),
    username: o.optStr('username'),
    password: o.optStr('password') ?? process.env.SPLITFLEET_PASSWORD,
    ca: o.optStr('ca'),
    outbox: outbox ? { dir: outbox, maxFrames: o.num('outboxFrames') } : undefined,
    bundleDir: o.optStr('bundleDir'),
    tagFrames: o.flag('tagFrames'),
    window: o.num('window'),
    resultTimeoutMs: o.num('resultTimeout'),
    latencyGoalMs: o.optNum('latencyGoal') ?? null,
    maxKbps: o.optNum('maxKbps') ?? null,
    ...wireOptions(o),
    json: o.flag('json'),
    verbose: o.flag('verbose'),
  };
}

/** --wire, --batch-frames, --batch-delay-ms and --topk; batching and topk are wire v2's. */
function wireOptions(o: OptionValues): Pick<AgentCliOptions, 'wire' | 'batch' | 'topk'> {
  const wire = o.choice('wire', WIRE_FORMATS);
  const batch = batchOf(o);
  const topk = o.num('topk');
  if (wire === 'v1' && (batch !== null || topk !== 1))
    throw new Error('--batch-frames and --topk are for wire v2 (--wire v2)');
  return { wire, batch, topk };
}

export function register(cmd: Command): void {
  cmd
    .option(
      '--config <file>',
      'agent config file (YAML/JSON): one key per flag, e.g. "latency-goal: 80"; flags win',
    )
    .option('--device <id>', 'device id (required, here or in --config)')
    .option(
      '--url <url>',
      'edge broker URL (mqtt://, mqtts://, ws://, wss://); several, comma-separated (a cluster): the next is tried when one is lost',
      brokerUrl,
      'mqtt://127.0.0.1:1883',
    )
    .option('--fleet <id>', 'fleet id', DEFAULT_FLEET)
    .option('--model <name>', 'model name, name@version or bundle folder', DEFAULT_MODEL)
    .option('--codec <name>', 'feature codec (split-q, aecnn, frankensplit, ...)', 'split-q')
    .option('--point <n>', 'codec operating point', int(0, 255), 0)
    .option(
      '--source <path>',
      "'sample', an image folder, a .tar.gz, the CIFAR-10 binary release, v4l2:/dev/video0, a video file or stream URL, mqtt://host/topic, or - (stdin)",
      'sample',
    )
    .addOption(
      new Option('--split <split>', 'dataset split to read')
        .choices(['train', 'test'])
        .default('test'),
    )
    .option('--frames <n>', 'stop after n frames', int(1))
    .option('--loop', 'repeat the source forever')
    .option('--fps <n>', 'frames per second (0: as fast as the window allows)', num, 5)
    .option('--threads <n>', 'head inference threads', int(1, 64), 1)
    .addOption(
      new Option(
        '--engine <name>',
        'head inference engine (one it cannot run falls back, logged; a fleet config may change it)',
      )
        .choices(ENGINE_NAMES)
        .default('auto'),
    )
    .option('--username <u>', 'MQTT username')
    .option('--password <p>', 'MQTT password (or SPLITFLEET_PASSWORD)')
    .option('--ca <file>', 'PEM certificate(s) to trust for an mqtts:// edge')
    .option(
      '--outbox <dir>',
      'persistent outbox: frames survive a lost link and a restart (drop-oldest when full)',
    )
    .option('--outbox-frames <n>', 'outbox capacity in frames', int(1), 1000)
    .option('--tag-frames', "send each image's name in its frame (dashboards can show the image)")
    .option('--window <n>', 'frames awaiting results before capture waits', int(1, 1_000_000), 4)
    .option(
      '--result-timeout <ms>',
      'a frame without an answer after this long counts as lost',
      int(1),
      30_000,
    )
    .option(
      '--latency-goal <ms>',
      'pick the most accurate point of a learned codec that meets this end-to-end latency on the link',
      num,
    )
    .option('--max-kbps <n>', 'never send features faster than this (kbit/s)', num)
    .addOption(
      new Option(
        '--wire <format>',
        'wire format: v1 self-describing frames and full JSON results; v2 lean frames (6-byte header) and compact answers, with an edge that speaks it (a fleet config naming the other one is refused)',
      )
        .choices(WIRE_FORMATS)
        .default('v1'),
    );
  batchOptions(cmd)
    .option(
      '--topk <k>',
      `wire v2: classes in each answer (1..${SETTING_MAX_TOPK})`,
      int(1, SETTING_MAX_TOPK),
      1,
    )
    .option(
      '--bundle-dir <dir>',
      'bundle store: models a config names are fetched from the edge over the air into it',
    )
    .option('--json', 'print only a summary at the end, as one JSON line')
    .option('--verbose', 'a line per result (also with LOG_LEVEL=debug)')
    .action(async (_o: unknown, c: Command) => {
      const file = new OptionValues(c.opts(), 'splitfleet agent').optStr('config');
      if (file) await applyAgentConfig(c, file);
      await runAgent(agentOptions(c.opts()));
    });
}

/** The latencies' medians by quarter, in answer order (see AgentSummary). */
export function quartersP50(latencies: readonly number[]): (number | null)[] {
  const n = latencies.length;
  const q = Math.max(1, Math.floor(n / 4));
  const med = (xs: readonly number[]) => (xs.length ? round(percentile(xs, 50)) : null);
  return [
    med(latencies.slice(0, q)),
    med(latencies.slice(q, 2 * q)),
    med(latencies.slice(2 * q, Math.max(2 * q, n - q))),
    med(n ? latencies.slice(-q) : []),
  ];
}

async function runAgent(o: AgentCliOptions): Promise<void> {
  const { Agent } = await import('../../device-agent/agent.js');
  const { Accuracy, datasetLabels } = await import('../../device-agent/accuracy.js');
  const { log } = await import('../../core/util/log.js');
  const perResult = !o.json && (o.verbose || log.isLevelEnabled('debug'));
  const agent = new Agent(
    {
      url: o.url,
      fleet: o.fleet,
      deviceId: o.device,
      bundle: await resolveBundle(o.model, { codec: o.codec }),
      codec: o.codec,
      point: o.point,
      source: o.source,
      fps: o.fps,
      threads: o.threads,
      engine: o.engine,
      username: o.username,
      password: o.password,
      // a config from the edge may name another model or a learned codec
      resolveBundle: (ref, codec) => resolveBundle(ref, { codec }),
      ca: o.ca ? await readFile(o.ca) : undefined,
      outbox: o.outbox,
      bundles: o.bundleDir ? { dir: o.bundleDir } : undefined,
      latencyGoalMs: o.latencyGoalMs,
      tagFrames: o.tagFrames,
      maxKbps: o.maxKbps,
      maxInFlight: o.window,
      resultTimeoutMs: o.resultTimeoutMs,
      wire: o.wire,
      batch: o.batch,
      topk: o.topk,
    },
    {
      result: (r, ms) => {
        if (perResult)
          process.stdout.write(
            `frame ${r.frameId}: ${r.label} (${round(r.score, 3)}) in ${round(ms, 1)} ms\n`,
          );
      },
    },
  );
  // top-1 against the source's labels, where it has them (the agent never sees them)
  const accuracy = new Accuracy(await datasetLabels(o.source));
  accuracy.follow(agent);
  const summary = (): AgentSummary => {
    const s = agent.stats;
    return {
      sent: s.sent,
      results: s.results,
      errors: s.errors,
      lost: s.lost,
      accuracy: accuracy.labelled ? round(accuracy.top1, 4) : null,
      bytesPerFrame: s.sent ? round(s.frameBytes / s.sent, 1) : 0,
      latencyMs: {
        p50: s.latenciesMs.length ? round(percentile(s.latenciesMs, 50)) : null,
        p99: s.latenciesMs.length ? round(percentile(s.latenciesMs, 99)) : null,
        quartersP50: quartersP50(s.latenciesMs),
      },
      headMsP50: s.headMs.length ? round(percentile(s.headMs, 50), 3) : null,
      fps: s.elapsedMs > 0 ? round((1000 * s.sent) / s.elapsedMs, 2) : 0,
      skipped: s.skipped,
      reconnects: s.reconnects,
      dropped: s.dropped,
      restored: s.restored,
      ota: agent.updater?.stats ?? null,
      point: agent.settings.point,
      pointChanges: s.pointChanges.length,
    };
  };
  const print = () => {
    const line = JSON.stringify(summary());
    process.stdout.write(o.json ? `${line}\n` : `summary: ${line}\n`);
  };
  const progress = () => {
    const s = summary();
    process.stdout.write(
      `progress: ${s.sent} sent, ${s.results} results, ${s.errors} errors, ${s.lost} lost, ` +
        `${s.bytesPerFrame} B/frame, p50 ${s.latencyMs.p50 ?? '-'} ms, ${s.fps} fps\n`,
    );
  };
  // a signal stops capture at once: frames still unanswered count as lost; it also stops
  // an agent still waiting for its edge at start
  let signalled = false;
  let timer: NodeJS.Timeout | null = null;
  stopOnSignal(async () => {
    signalled = true;
    if (timer) clearInterval(timer);
    await agent.stop(true);
    print();
  });
  try {
    await agent.start();
  } catch (e) {
    if (signalled) return; // stopped while waiting for the edge: the signal's stop prints
    throw e;
  }
  if (signalled) return;
  timer = o.json ? null : setInterval(progress, PROGRESS_MS);
  timer?.unref();
  await agent.run();
  if (signalled) return; // the signal's stop prints the summary
  if (timer) clearInterval(timer);
  await agent.stop();
  print();
}
