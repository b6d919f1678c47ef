#!/usr/bin/env node
/**
 * `splitfleet-agent`: the device agent's own command, the one the splitfleet-agent
 * package (`npm run pack:agent`) installs and the systemd unit runs.
 * `splitfleet-agent [options]` is `splitfleet agent [options]`: the same flags, config
 * file, output and exit status. Only the agent's code is loaded: the other commands load
 * when they run, and they never run from here.
 */
process.argv.splice(2, 0, 'agent');
await import('../cli/main.js');
