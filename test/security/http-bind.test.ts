/**
 * HTTP surfaces stay on this host unless asked: `splitfleet edge` binds MQTT (TCP and
 * WebSocket) to every interface and its metrics / devices listener to 127.0.0.1, and the
 * banner prints the address each listener is really bound to. A listener bound to
 * 127.0.0.1 refuses connections to 127.0.0.2 (another loopback address), one bound to
 * 0.0.0.0 takes them: that tells the two apart on any Linux machine.
 */
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../core/paths.js';
import { waitFor } from '../helpers/wait.js';

function edgeProcess(...extra: string[]): { p: ChildProcess; out: () => string } {
  const p = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(PROJECT_ROOT, 'cli', 'main.ts'),
      'edge',
      '--port',
      '0',
      '--ws-port',
      '0',
      '--metrics-port',
      '0',
      '--workers',
      '1',
      ...extra,
    ],
    { cwd: PROJECT_ROOT, env: { ...process.env, LOG_LEVEL: 'warn' } },
  );
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return { p, out: () => out };
}

function connects(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const stop = (p: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (p.exitCode !== null) return resolve();
    p.once('close', () => resolve());
    p.kill('SIGTERM');
    setTimeout(() => p.kill('SIGKILL'), 10_000).unref();
  });

/** The port of the listener `name` in the banner's "listening:" lines. */
function bound(out: string, name: string): { host: string; port: number } {
  const re = new RegExp(`^\\s+${name}\\s+(\\S+):(\\d+)\\b`, 'm');
  const m = re.exec(out);
  if (!m) throw new Error(`no ${name} listener in:\n${out}`);
  return { host: m[1]!, port: Number(m[2]) };
}

test('metrics and /devices bind to 127.0.0.1 by default, MQTT to every interface', async (t) => {
  const { p, out } = edgeProcess();
  try {
    await waitFor(() => /metrics\s+\S+:\d+/.test(out()) || p.exitCode !== null, 60_000);
    const mqtt = bound(out(), 'mqtt');
    const metrics = bound(out(), 'metrics');
    t.is(mqtt.host, '0.0.0.0');
    t.is(metrics.host, '127.0.0.1');
    t.true(await connects('127.0.0.2', mqtt.port));
    t.true(await connects('127.0.0.1', metrics.port));
    t.false(await connects('127.0.0.2', metrics.port));
  } finally {
    await stop(p);
  }
});

test('--http-host opens the HTTP listeners where asked', async (t) => {
  const { p, out } = edgeProcess('--http-host', '0.0.0.0', '--host', '127.0.0.1');
  try {
    await waitFor(() => /metrics\s+\S+:\d+/.test(out()) || p.exitCode !== null, 60_000);
    const mqtt = bound(out(), 'mqtt');
    const metrics = bound(out(), 'metrics');
    t.is(mqtt.host, '127.0.0.1');
    t.is(metrics.host, '0.0.0.0');
    t.false(await connects('127.0.0.2', mqtt.port));
    t.true(await connects('127.0.0.2', metrics.port));
  } finally {
    await stop(p);
  }
});
