/**
 * `splitfleet worker`: a decoder worker on any MQTT 5 broker, sharing the feature stream
 * with its group ($share/...), until a signal stops it.
 */
import type { Command } from 'commander';
import { DEFAULT_FLEET } from '../../fleet-config/schema.js';
import { readFile } from 'node:fs/promises';
import { DEFAULT_MODEL, resolveBundle } from '../../core/model/zoo.js';
import { brokerUrl, int, OptionValues } from '../args.js';
import { stopOnSignal } from '../signals.js';

export interface WorkerCliOptions {
  url: string;
  group: string;
  id: string;
  fleet: string;
  models: string[];
  threads: number;
  username?: string;
  password?: string;
  ca?: string;
}

export function workerOptions(raw: Readonly<Record<string, unknown>>): WorkerCliOptions {
  const o = new OptionValues(raw, 'splitfleet worker');
  return {
    url: o.str('url'),
    group: o.str('group'),
    id: o.str('id'),
    fleet: o.str('fleet'),
    models: o.strs('model'),
    threads: o.num('threads'),
    username: o.optStr('username'),
    password: o.optStr('password') ?? process.env.SPLITFLEET_PASSWORD,
    ca: o.optStr('ca'),
  };
}

export function register(cmd: Command): void {
  cmd
    .option(
      '--url <url>',
      'broker URL (mqtt://, mqtts://, ws://, wss://)',
      brokerUrl,
      'mqtt://127.0.0.1:1883',
    )
    .option('--group <name>', 'shared-subscription group', 'splitfleet-decoders')
    .option('--id <id>', 'worker id (client id sf-worker-<id>)', `w${process.pid}`)
    .option('--fleet <id>', "fleet to decode ('+': all)", DEFAULT_FLEET)
    .option('--model <names...>', 'models to decode', [DEFAULT_MODEL])
    .option('--threads <n>', 'inference threads', int(1, 64), 1)
    .option('--username <u>', 'MQTT username (a worker)')
    .option('--password <p>', 'MQTT password (or SPLITFLEET_PASSWORD)')
    .option('--ca <file>', 'PEM certificate(s) to trust for mqtts://')
    .action(async (_o: unknown, c: Command) => {
      const o = workerOptions(c.opts());
      const { ShareWorker } = await import('../../edge-broker/decode/share-worker.js');
      const w = await ShareWorker.start({
        url: o.url,
        group: o.group,
        workerId: o.id,
        fleet: o.fleet,
        bundles: await Promise.all(o.models.map((m) => resolveBundle(m))),
        threads: o.threads,
        username: o.username,
        password: o.password,
        ca: o.ca ? await readFile(o.ca) : undefined,
      });
      process.stdout.write(`worker ${o.id} in group ${o.group} on ${o.url}\n`);
      stopOnSignal(async () => {
        await w.stop();
        process.stdout.write(`stopped: ${JSON.stringify(w.stats)}\n`);
      });
    });
}
