#!/usr/bin/env node
/**
 * The splitfleet command-line tool: its commands and where each is defined.
 *
 * A command's module (its options, what it runs) loads only when that command runs or
 * shows its help, so `splitfleet agent` on a device never loads the broker, Node-RED, the
 * benchmarks or the Redis clients (test/cli/imports.test.ts checks it). The agent's module
 * is the one imported statically: it is what a device runs (deploy/agent-entry.ts), and it
 * loads the agent itself only when it runs.
 */
import { Command, Option } from 'commander';
import * as agent from './commands/agent.js';
import { PROJECT_VERSION } from '../core/paths.js';

interface CommandModule {
  register(cmd: Command): void;
}

interface Entry {
  name: string;
  description: string;
  load: () => Promise<CommandModule> | CommandModule;
}

const COMMANDS: Entry[] = [
  {
    name: 'demo',
    description: 'edge + embedded broker + simulated devices on the shipped sample, offline',
    load: () => import('./commands/demo.js'),
  },
  {
    name: 'edge',
    description: 'run an edge node: embedded MQTT broker (TCP + WebSocket) and decoder workers',
    load: () => import('./commands/edge.js'),
  },
  {
    name: 'worker',
    description:
      'a decoder worker on any MQTT 5 broker: shares the feature stream with its group ($share/...)',
    load: () => import('./commands/worker.js'),
  },
  {
    name: 'agent',
    description: 'run a device agent: source -> head -> codec -> MQTT, and listen for results',
    load: () => agent,
  },
  {
    name: 'bench',
    description: 'benchmarks (print a table; --json adds one JSON line)',
    load: () => import('../bench/cli.js'),
  },
  {
    name: 'fleet',
    description: 'the fleet file: validate it, show effective device configs, write its schema',
    load: () => import('./commands/fleet.js'),
  },
  {
    name: 'models',
    description: 'list the model zoo and the codecs',
    load: () => import('./commands/models.js'),
  },
];

const program = new Command()
  .name('splitfleet')
  .description(
    'Split inference for IoT fleets: CNN head on the device, tail on the edge, features over MQTT.',
  )
  .version(PROJECT_VERSION, '-V, --version', 'print the version')
  .addOption(
    new Option('--zoo <dir>', 'a model zoo folder to use besides the shipped one').env(
      'SPLITFLEET_ZOO',
    ),
  )
  .addOption(
    new Option('--log-format <format>', 'log lines: pretty (default on a terminal) or json')
      .choices(['pretty', 'json'])
      .env('SPLITFLEET_LOG_FORMAT'),
  )
  .showHelpAfterError();

// Options every command takes (before or after its name) reach the modules that read them,
// and the processes a command starts, through the environment.
program.hook('preAction', () => {
  const o = program.opts<{ zoo?: string; logFormat?: string }>();
  if (o.zoo !== undefined) process.env.SPLITFLEET_ZOO = o.zoo;
  if (o.logFormat !== undefined) process.env.SPLITFLEET_LOG_FORMAT = o.logFormat;
});

const pending = new Map<string, { cmd: Command; load: Entry['load'] }>();
for (const e of COMMANDS) {
  pending.set(e.name, { cmd: program.command(e.name).description(e.description), load: e.load });
}

/** Give a command its options, action and subcommands (once), before it parses. */
async function define(name: string): Promise<void> {
  const p = pending.get(name);
  if (!p) return;
  pending.delete(name);
  (await p.load()).register(p.cmd);
}

program.hook('preSubcommand', (_program, sub) => define(sub.name()));
// `splitfleet help <command>` shows a command's help without dispatching to it
program.helpCommand(false);
program
  .command('help')
  .description('display help for command')
  .argument('[command]')
  .action(async (name?: string) => {
    if (name) await define(name);
    const cmd = name ? program.commands.find((c) => c.name() === name) : undefined;
    (cmd ?? program).help();
  });

program.parseAsync().catch((e: unknown) => {
  // `splitfleet edge: port 9001 is in use (--ws-port); ...`: the command that failed
  const sub = program.args[0];
  const who =
    sub && program.commands.some((c) => c.name() === sub) ? `splitfleet ${sub}` : 'splitfleet';
  process.stderr.write(`${who}: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
