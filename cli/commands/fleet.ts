/**
 * `splitfleet fleet ...`: the fleet file (validate, show, schema), credential files, and
 * the commands that talk to a running edge (status, rollout, rollback, jobs, models).
 */
import { Option, type Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { writeSecretFile } from '../../core/util/secret-file.js';
import {
  hashPassword,
  newPassword,
  parseCredentials,
  ROLES,
  type CredentialFile,
} from '../../edge-broker/credentials.js';
import { effectiveConfig } from '../../fleet-config/effective.js';
import { FleetConfigError, formatProblem, loadFleet } from '../../fleet-config/load.js';
import { fleetSchema } from '../../fleet-config/schema.js';
import { OptionValues } from '../args.js';
import { addJobCommands } from './fleet-jobs.js';
import { registerStatus } from './fleet-status.js';
import { fleetContext } from './shared.js';

const isMissing = (e: unknown) => e instanceof Error && 'code' in e && e.code === 'ENOENT';

export function register(fleet: Command): void {
  fleet
    .command('validate')
    .description(
      'check a fleet file; exit 0 when valid, else 1 with every problem as file:line:col',
    )
    .argument('<file>', 'fleet file (YAML)')
    .option('--json', 'print the result as one JSON object')
    .action(async (file: string, _o: unknown, c: Command) => {
      const json = new OptionValues(c.opts(), 'splitfleet fleet validate').flag('json');
      try {
        const f = await loadFleet(file, await fleetContext());
        const devices = Object.keys(f.devices).length;
        process.stdout.write(
          json
            ? JSON.stringify({ valid: true, file, fleet: f.fleet, devices, problems: [] }) + '\n'
            : `${file}: valid (fleet ${f.fleet}, ${devices} devices)\n`,
        );
      } catch (e) {
        if (!(e instanceof FleetConfigError)) throw e;
        process.stdout.write(
          json
            ? JSON.stringify({ valid: false, file, problems: e.problems }) + '\n'
            : e.problems.map(formatProblem).join('\n') + '\n',
        );
        process.exitCode = 1;
      }
    });

  fleet
    .command('show')
    .description("each device's effective config (defaults <- group <- device) as JSON lines")
    .argument('<file>', 'fleet file (YAML)')
    .option('--device <id>', 'only this device')
    .action(async (file: string, _o: unknown, c: Command) => {
      const device = new OptionValues(c.opts(), 'splitfleet fleet show').optStr('device');
      const f = await loadFleet(file, await fleetContext());
      const ids = device ? [device] : Object.keys(f.devices);
      for (const id of ids) process.stdout.write(JSON.stringify(effectiveConfig(f, id)) + '\n');
    });

  registerStatus(fleet);

  fleet
    .command('credentials')
    .description(
      'add or replace a user in a credential file (salted scrypt hash); prints a new password once',
    )
    .argument('<file>', 'credential file (JSON; created if missing)')
    .requiredOption('--user <id>', 'user name (for a device: its device id)')
    .addOption(new Option('--role <role>', 'role').choices([...ROLES]).makeOptionMandatory())
    .option('--fleet <id>', 'fleet the user belongs to (required for devices)')
    .action(async (file: string, _o: unknown, c: Command) => {
      const o = new OptionValues(c.opts(), 'splitfleet fleet credentials');
      const [user, role] = [o.str('user'), o.choice('role', ROLES)];
      let store: CredentialFile = { version: 1, users: {} };
      try {
        store = parseCredentials(await readFile(file, 'utf8'), file);
      } catch (e) {
        if (!isMissing(e)) throw e;
      }
      const password = process.env.SPLITFLEET_PASSWORD || newPassword();
      store.users[user] = {
        role,
        fleet: o.optStr('fleet') ?? null,
        hash: await hashPassword(password),
      };
      const checked = parseCredentials(JSON.stringify(store), file); // ids, fleet of devices
      await writeSecretFile(file, JSON.stringify(checked, null, 2) + '\n');
      process.stdout.write(
        process.env.SPLITFLEET_PASSWORD
          ? `${user}: stored (${role})\n`
          : `${user}: stored (${role}); password (shown once): ${password}\n`,
      );
    });

  fleet
    .command('schema')
    .description("print the fleet file's JSON Schema (fleet-config/fleet.schema.json)")
    .action(() => {
      process.stdout.write(JSON.stringify(fleetSchema(), null, 2) + '\n');
    });

  addJobCommands(fleet);
}
