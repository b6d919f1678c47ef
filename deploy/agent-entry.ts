#!/usr/bin/env node
/**
 * `splitfleet-agent`: the device agent's own command, the one the splitfleet-agent package
 * (`npm run pack:agent`) installs and the systemd unit runs. Its flags, config file, output
 * and exit status are those of `splitfleet agent` (cli/commands/agent.ts); only the agent's
 * code is loaded.
 */
import { Command } from 'commander';
import { register } from '../cli/commands/agent.js';
import { PROJECT_VERSION } from '../core/paths.js';

const program = new Command('splitfleet-agent')
  .description('run a device agent: source -> head -> codec -> MQTT, and listen for results')
  .version(PROJECT_VERSION, '-V, --version', 'print the version')
  .showHelpAfterError();
register(program);
program.parseAsync().catch((e: unknown) => {
  process.stderr.write(`splitfleet-agent: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
