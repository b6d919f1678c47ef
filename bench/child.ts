/**
 * The splitfleet CLI as a child process of a benchmark: how to start it, read the JSON
 * lines it prints (`--json`), and stop it.
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { PROJECT_ROOT } from '../core/paths.js';

/** Whether this benchmark runs from the TypeScript sources (through tsx), not dist/. */
const FROM_SOURCE = import.meta.url.endsWith('.ts');

/**
 * Node's arguments that run the CLI: by default the same code as the benchmark (the
 * sources through tsx when it runs from source, as the tests do; dist/ when it runs
 * built); `built` asks for dist/cli/main.js whatever runs (memory measurements, which
 * tsx would add to).
 */
export function cliArgs(built = !FROM_SOURCE): string[] {
  return built
    ? [join(PROJECT_ROOT, 'dist', 'cli', 'main.js')]
    : ['--import', import.meta.resolve('tsx'), join(PROJECT_ROOT, 'cli', 'main.ts')];
}

/** Call `fn` with every line of `stream` that is a JSON object (other lines are skipped). */
export function onJsonLine(stream: Readable, fn: (v: Record<string, unknown>) => void): void {
  createInterface({ input: stream }).on('line', (line) => {
    if (!line.startsWith('{')) return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      return;
    }
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) fn(v as Record<string, unknown>);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** SIGTERM, then SIGKILL after 5 s; resolves once it has exited. */
export async function stopChild(c: ChildProcess | null | undefined): Promise<void> {
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill('SIGTERM');
  if (await Promise.race([gone.then(() => true), sleep(5000).then(() => false)])) return;
  c.kill('SIGKILL');
  await gone;
}
