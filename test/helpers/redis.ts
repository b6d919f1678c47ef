/**
 * A real redis-server (Debian's /usr/bin/redis-server) for a test: its own free port and
 * temporary folder, no snapshots; with `appendonly` every write is fsynced to its append
 * log, so a restart (even after SIGKILL) finds the broker's state again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './net.js';

export const REDIS_SERVER = process.env.SPLITFLEET_REDIS_SERVER ?? '/usr/bin/redis-server';

export interface RedisServer {
  url: string;
  /** Stop it (SIGTERM, or SIGKILL: a crash) and start it again on the same port and folder;
   * `downMs` is how long it stays down. */
  restart(opts?: { kill?: boolean; downMs?: number }): Promise<void>;
  stop(): Promise<void>;
}

function launch(port: number, dir: string, appendonly: boolean): Promise<ChildProcess> {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', ''];
  args.push('--appendonly', appendonly ? 'yes' : 'no', '--appendfsync', 'always');
  const p = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`redis-server did not start: ${out}`));
    }, 15_000);
    p.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer);
        p.stdout!.removeAllListeners('data');
        p.stdout!.resume();
        resolve(p);
      }
    });
    p.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    p.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited (${code}): ${out}`));
    });
  });
}

function exited(p: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((r) => {
    p.once('exit', () => r());
    p.kill(signal);
  });
}

export async function startRedis(opts: { appendonly?: boolean } = {}): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), 'sf-redis-'));
  const port = await freePort();
  const appendonly = opts.appendonly ?? false;
  let proc = await launch(port, dir, appendonly);
  return {
    url: `redis://127.0.0.1:${port}`,
    async restart({ kill = false, downMs = 1000 } = {}) {
      await exited(proc, kill ? 'SIGKILL' : 'SIGTERM');
      await new Promise((r) => setTimeout(r, downMs));
      proc = await launch(port, dir, appendonly);
    },
    async stop() {
      await exited(proc, 'SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
}
