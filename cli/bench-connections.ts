/**
 * `splitfleet bench connections --count 10000`: many simulated devices on one edge node,
 * with presence. The edge runs as its own process (`splitfleet edge`, as deployed), so
 * its resident memory is its alone (read from /proc). Each simulated device is a raw
 * MQTT 3.1.1 connection (mqtt-packet): CONNECT with its last will, then its retained
 * birth, as the agent does; the edge's presence tracking is read back from its
 * Prometheus endpoint (`splitfleet_devices_online`). Then every connection is cut
 * without a DISCONNECT, and the wills must bring the count back to 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { connect as tcpConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import mqttPacket from 'mqtt-packet';
import { PROJECT_ROOT } from '../core/paths.js';
import { deviceTopic } from '../core/protocol/topics.js';
import { round } from '../core/util/stats.js';

export interface ConnectionsOptions {
  count: number;
  /** Connections opened at once. */
  batch?: number;
  timeoutMs?: number;
  log?: (line: string) => void;
}

export interface ConnectionsReport {
  connections: number;
  connected: number;
  devicesOnline: number;
  devicesOnlineAfterCut: number;
  connectSeconds: number;
  edgeRssMiB: { idle: number; connected: number };
  perConnectionKiB: number;
  goalRssUnder1GiB: boolean;
  machine: string;
}

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  return round(kb / 1024, 1);
}

/** Start `splitfleet edge` on free ports; resolves with its MQTT and metrics URLs. */
function startEdgeProcess(): Promise<{ child: ChildProcess; mqtt: string; metrics: string }> {
  const child = spawn(
    process.execPath,
    [
      join(PROJECT_ROOT, 'dist', 'cli', 'main.js'),
      'edge',
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--no-ws',
      '--metrics-port',
      '0',
      '--workers',
      '1',
      '--fleet',
      'bench',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'warn' } },
  );
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`edge did not start: ${out}`)), 60_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /on (mqtt:\/\/\S+?)(?: and|;).*metrics on (http:\/\/\S+)\/metrics/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, mqtt: m[1]!, metrics: m[2]! });
      }
    });
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`edge exited (${code}): ${out}`));
    });
  });
}

async function devicesOnline(metrics: string): Promise<number> {
  const text = await (await fetch(`${metrics}/metrics`)).text();
  return Number(/^splitfleet_devices_online(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1] ?? 0);
}

/** One simulated device: CONNECT with a will, retained birth; resolves once CONNACK'd. */
function device(host: string, port: number, i: number): Promise<Socket> {
  const id = `d${i}`;
  const status = (state: string) => Buffer.from(JSON.stringify({ state, seq: 1, ts: Date.now() }));
  const topic = deviceTopic('bench', id, 'status');
  return new Promise((resolve, reject) => {
    const sock = tcpConnect(port, host);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p) => {
      if (p.cmd !== 'connack') return;
      if (p.returnCode !== 0) return reject(new Error(`CONNACK ${p.returnCode}`));
      sock.write(
        mqttPacket.generate({
          cmd: 'publish',
          topic,
          payload: status('online'),
          qos: 0,
          retain: true,
          dup: false,
        }),
      );
      resolve(sock);
    });
    sock.on('data', (d) => parser.parse(d));
    sock.on('error', reject);
    sock.on('connect', () =>
      sock.write(
        mqttPacket.generate({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clientId: `bench-${id}`,
          clean: true,
          keepalive: 0,
          will: { topic, payload: status('offline'), qos: 1, retain: true },
        }),
      ),
    );
  });
}

async function waitFor(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 500));
  }
  return cond();
}

export async function benchConnections(o: ConnectionsOptions): Promise<ConnectionsReport> {
  const say = o.log ?? (() => undefined);
  const timeout = o.timeoutMs ?? 300_000;
  const { child, mqtt, metrics } = await startEdgeProcess();
  const socks: Socket[] = [];
  try {
    const url = new URL(mqtt);
    await new Promise((r) => setTimeout(r, 1000));
    const idle = await rssMiB(child.pid!);
    say(`edge up (pid ${child.pid}, ${idle} MiB); opening ${o.count} connections`);
    const t0 = performance.now();
    const batch = o.batch ?? 250;
    for (let i = 0; i < o.count; i += batch) {
      const n = Math.min(batch, o.count - i);
      socks.push(
        ...(await Promise.all(
          Array.from({ length: n }, (_, k) => device(url.hostname, Number(url.port), i + k)),
        )),
      );
      if ((i / batch) % 8 === 0) say(`${socks.length} connected`);
    }
    const connectSeconds = round((performance.now() - t0) / 1000, 2);
    await waitFor(async () => (await devicesOnline(metrics)) >= o.count, timeout);
    const online = await devicesOnline(metrics);
    const connected = await rssMiB(child.pid!);
    say(`${online} devices online; edge ${connected} MiB; cutting every connection`);
    for (const s of socks) s.destroy();
    await waitFor(async () => (await devicesOnline(metrics)) === 0, timeout);
    const after = await devicesOnline(metrics);
    return {
      connections: o.count,
      connected: socks.length,
      devicesOnline: online,
      devicesOnlineAfterCut: after,
      connectSeconds,
      edgeRssMiB: { idle, connected },
      perConnectionKiB: round(((connected - idle) * 1024) / Math.max(1, o.count), 1),
      goalRssUnder1GiB: connected < 1024,
      machine: `${process.platform} ${process.arch}, Node ${process.version}`,
    };
  } finally {
    for (const s of socks) s.destroy();
    child.kill('SIGTERM');
  }
}
