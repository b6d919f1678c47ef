/**
 * The `splitfleet` CLI as a long-running child process from source, for tests that talk
 * to it while it runs: wait for a line, send it a signal, read what it printed. With
 * `tty`, it runs under `script` (a pseudo-terminal: stdout and stderr are one terminal).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../core/paths.js';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Child {
  /** Everything written so far (with `tty`: the terminal's output, both streams). */
  readonly stdout: string;
  readonly stderr: string;
  readonly pid: number;
  /** Resolves once `re` matches stdout (or stderr); rejects when the child exits first. */
  waitFor(re: RegExp, stream?: 'stdout' | 'stderr'): Promise<RegExpMatchArray>;
  signal(sig: NodeJS.Signals): void;
  exited: Promise<Exit>;
}

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

export function cliChild(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; tty?: boolean; killAfterMs?: number } = {},
): Child {
  const argv = [process.execPath, '--import', 'tsx', join(PROJECT_ROOT, 'cli', 'main.ts'), ...args];
  // the child decides its own log format and colours unless the test says
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'info', SPLITFLEET_LOG_FILE: '' };
  delete env.SPLITFLEET_LOG_FORMAT;
  delete env.NO_COLOR;
  Object.assign(env, opts.env);
  // script -e: its exit status is the command's; -f: output as it comes; -q: no banner
  const p = opts.tty
    ? spawn('script', ['-qfec', `exec ${argv.map(quote).join(' ')}`, '/dev/null'], {
        cwd: PROJECT_ROOT,
        env,
      })
    : spawn(argv[0]!, argv.slice(1), { cwd: PROJECT_ROOT, env });
  let stdout = '';
  let stderr = '';
  const waiters: { re: RegExp; stream: 'stdout' | 'stderr'; ok: (m: RegExpMatchArray) => void }[] =
    [];
  const check = () => {
    for (const w of [...waiters]) {
      const m = (w.stream === 'stdout' ? stdout : stderr).match(w.re);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.ok(m);
      }
    }
  };
  p.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    check();
  });
  p.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    check();
  });
  p.stdin.end();
  const timer = setTimeout(() => p.kill('SIGKILL'), opts.killAfterMs ?? 150_000);
  const exited = new Promise<Exit>((resolve) =>
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    }),
  );
  return {
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    pid: p.pid ?? -1,
    waitFor(re, stream = 'stdout') {
      return new Promise((ok, fail) => {
        waiters.push({ re, stream, ok });
        check();
        exited.then(() => {
          const m = (stream === 'stdout' ? stdout : stderr).match(re);
          if (m) ok(m);
          else
            fail(
              new Error(
                `exited before ${re} on ${stream}:\n${stdout.slice(-2000)}\n${stderr.slice(-2000)}`,
              ),
            );
        }, fail);
      });
    },
    signal(sig) {
      p.kill(sig);
    },
    exited,
  };
}
