/**
 * The wire settings' flags and their checks: the edge's --max-frame-bytes and
 * --no-full-results, the agent's --wire, --batch-frames, --batch-delay-ms and --topk, and
 * the same settings in a config message (bounded as the fleet file's schema bounds them).
 */
import test from 'ava';
import { Command, CommanderError } from 'commander';
import { agentOptions, register as registerAgent } from '../../cli/commands/agent.js';
import {
  edgeOptions,
  MAX_FRAME_BYTES_RANGE,
  register as registerEdge,
} from '../../cli/commands/edge.js';
import { MAX_COMPACT_TOPK } from '../../core/wire/context.js';
import { MAX_PAYLOAD_BYTES } from '../../core/wire/frame.js';
import { V2_MAX_BATCH } from '../../core/wire/frame-v2.js';
import { BATCH_BOUNDS, parseConfig, SETTING_MAX_TOPK } from '../../core/wire/messages.js';

/** A command with `register`'s options whose action only keeps the options parsed. */
function parser(register: (c: Command) => void, name: string) {
  return (args: string[]): Record<string, unknown> => {
    const cmd = new Command(name).exitOverride().configureOutput({ writeErr: () => undefined });
    register(cmd);
    let got: Record<string, unknown> = {};
    cmd.action((_o: unknown, c: Command) => {
      got = c.opts();
    });
    cmd.parse(args, { from: 'user' });
    return got;
  };
}
const edge = parser(registerEdge, 'edge');
const agent = parser(registerAgent, 'agent');

test('edge: --max-frame-bytes (1 MiB by default, bounded) and --no-full-results parse', (t) => {
  const d = edgeOptions(edge([]));
  t.is(d.maxFrameBytes, MAX_PAYLOAD_BYTES);
  t.true(d.fullResults);
  const o = edgeOptions(edge(['--max-frame-bytes', '4194304', '--no-full-results']));
  t.is(o.maxFrameBytes, 4 * 1024 * 1024);
  t.false(o.fullResults);
  for (const bad of ['0', String(MAX_FRAME_BYTES_RANGE.max + 1), '1.5', 'lots'])
    t.throws(() => edge(['--max-frame-bytes', bad]), { instanceOf: CommanderError });
});

test('agent: --wire, --batch-frames, --batch-delay-ms and --topk parse; batching and topk need v2', (t) => {
  const base = ['--device', 'cam'];
  const d = agentOptions(agent(base));
  t.like(d, { wire: 'v1', batch: null, topk: 1 });
  const o = agentOptions(
    agent([
      ...base,
      '--wire',
      'v2',
      '--batch-frames',
      '8',
      '--batch-delay-ms',
      '20',
      '--topk',
      '3',
    ]),
  );
  t.like(o, { wire: 'v2', batch: { maxFrames: 8, maxDelayMs: 20 }, topk: 3 });
  t.like(agentOptions(agent([...base, '--wire', 'v2', '--batch-frames', '4'])), {
    batch: { maxFrames: 4, maxDelayMs: 50 },
  });
  t.throws(() => agentOptions(agent([...base, '--batch-frames', '4'])), {
    message: /for wire v2/,
  });
  t.throws(() => agentOptions(agent([...base, '--topk', '2'])), { message: /for wire v2/ });
  for (const bad of [
    ['--wire', 'v3'],
    ['--batch-frames', '1'],
    ['--batch-frames', '256'],
    ['--topk', '0'],
    ['--topk', '5'],
  ])
    t.throws(() => agent([...base, ...bad]), { instanceOf: CommanderError }, bad.join(' '));
});

test("the settings' bounds are the wire's own", (t) => {
  t.is(BATCH_BOUNDS.maxFrames, V2_MAX_BATCH);
  t.is(SETTING_MAX_TOPK, MAX_COMPACT_TOPK);
});

test('a config message carries wire, batch and topk checked; absent, they are the agent own', (t) => {
  const config = (settings: Record<string, unknown>) =>
    parseConfig(
      JSON.stringify({
        v: 1,
        configId: 'c1',
        fleet: 'f',
        device: 'd',
        group: null,
        ts: 1,
        settings: { model: 'm', codec: 'split-q', point: 0, fps: 5, ...settings },
      }),
    );
  const none = config({})!.settings;
  t.false('wire' in none || 'batch' in none || 'topk' in none);
  t.like(config({ wire: 'v2', batch: { maxFrames: 4, maxDelayMs: 20 }, topk: 2 })!.settings, {
    wire: 'v2',
    batch: { maxFrames: 4, maxDelayMs: 20 },
    topk: 2,
  });
  t.like(config({ wire: null, batch: null })!.settings, { wire: null, batch: null });
  for (const bad of [
    { wire: 'v3' },
    { wire: 2 },
    { batch: { maxFrames: 1, maxDelayMs: 20 } },
    { batch: { maxFrames: 256, maxDelayMs: 20 } },
    { batch: { maxFrames: 4, maxDelayMs: -1 } },
    { batch: { maxFrames: 4 } },
    { batch: { maxFrames: 4, maxDelayMs: 20, more: 1 } },
    { batch: [4, 20] },
    { topk: 0 },
    { topk: 5 },
    { topk: 1.5 },
  ])
    t.is(config(bad), undefined, JSON.stringify(bad));
});
