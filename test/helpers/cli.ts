/**
 * The `splitfleet` CLI as a child process from source (node --import tsx cli/main.ts),
 * for tests: its exit code and output, killed after `timeoutMs`; `stdin` is written
 * and closed.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../core/paths.js';

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  opts: { timeoutMs?: number; logLevel?: string; stdin?: Buffer } = {},
): Promise<CliRun> {
  return new Promise((resolve) => {
    const p = spawn(
      process.execPath,
      ['--import', 'tsx', join(PROJECT_ROOT, 'cli', 'main.ts'), ...args],
      {
        cwd: PROJECT_ROOT,
        // the CLI's own stderr is part of what tests check: its logs stay there
        env: { ...process.env, LOG_LEVEL: opts.logLevel ?? 'warn', SPLITFLEET_LOG_FILE: '' },
      },
    );
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    if (opts.stdin) p.stdin.end(opts.stdin);
    else p.stdin.end();
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 150_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The last line of a command's output as JSON (commands end with a JSON summary). */
export const lastJson = (s: string) =>
  JSON.parse(s.trim().split('\n').at(-1)!) as Record<string, unknown>;
