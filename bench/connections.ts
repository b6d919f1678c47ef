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
import mqttPacket from 'mqtt-packet';
import { cliArgs, onJsonLine } from './child.js';
import { deviceTopic } from '../core/wire/topics.js';
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

/** Resident memory of a process, MiB (Linux /proc). */
export async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  return round(kb / 1024, 1);
}

/** Start `splitfleet edge --json` as its own process with `args` on a free port; resolves
 * with its MQTT URL and, when it serves them, its metrics URL, from the JSON line it prints
 * once up. `nodeArgs` are node's own flags (e.g. --cpu-prof); `wrap` is a command the
 * process runs under (e.g. `ip netns exec NS`, with `host` the address it listens on
 * there); `built`: the built CLI whatever runs (child.ts cliArgs). */
export function startEdgeProcess(
  args: string[],
  nodeArgs: string[] = [],
  where: { wrap?: string[]; host?: string; built?: boolean } = {},
): Promise<{ child: ChildProcess; mqtt: string; metrics: string | null }> {
  const argv = [
    ...nodeArgs,
    ...cliArgs(where.built),
    'edge',
    '--host',
    where.host ?? '127.0.0.1',
    '--port',
    '0',
    '--no-ws',
    '--json',
    ...args,
  ];
  const [cmd, ...pre] = where.wrap?.length ? where.wrap : [process.execPath];
  const child = spawn(cmd!, where.wrap?.length ? [...pre, process.execPath, ...argv] : argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: 'warn' },
  });
  return new Promise((resolve, reject) => {
    let err = '';
    let up = false; // once up, its output is read and dropped (a long soak)
    const timer = setTimeout(() => reject(new Error(`edge did not start: ${err}`)), 60_000);
    onJsonLine(child.stdout!, (line) => {
      if (up || typeof line.mqtt !== 'string') return;
      up = true;
      clearTimeout(timer);
      const metrics = typeof line.metrics === 'string' ? line.metrics : null;
      resolve({ child, mqtt: line.mqtt, metrics });
    });
    child.stderr!.on('data', (d: Buffer) => {
      if (!up) err = (err + d.toString()).slice(-4000);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`edge exited (${code}): ${err}`));
    });
  });
}

async function devicesOnline(metrics: string): Promise<number> {
  const text = await (await fetch(`${metrics}/metrics`)).text();
  return Number(/^splitfleet_devices_online(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1] ?? 0);
}

/**
 * A raw MQTT 3.1.1 connection (mqtt-packet), as light as a simulated device can be:
 * CONNECT (with `will` if given), resolved once CONNACK'd; every later packet goes to
 * `onPacket`. Used by this bench and by the soak script.
 */
export function rawClient(
  url: string,
  clientId: string,
  opts: {
    will?: { topic: string; payload: Buffer };
    onPacket?: (p: mqttPacket.Packet) => void;
  } = {},
): Promise<Socket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = tcpConnect(Number(port), hostname);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    let connected = false;
    parser.on('packet', (p) => {
      if (connected) return opts.onPacket?.(p);
      if (p.cmd !== 'connack') return;
      if (p.returnCode !== 0) return reject(new Error(`CONNACK ${p.returnCode}`));
      connected = true;
      resolve(sock);
    });
    sock.on('data', (d) => parser.parse(d));
    sock.on('error', (e) => (connected ? undefined : reject(e)));
    sock.on('connect', () =>
      sock.write(
        mqttPacket.generate({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clientId,
          clean: true,
          keepalive: 0,
          ...(opts.will ? { will: { ...opts.will, qos: 1, retain: true } } : {}),
        }),
      ),
    );
  });
}

/** One simulated device: CONNECT with a will, then its retained birth. */
async function device(url: string, i: number): Promise<Socket> {
  const id = `d${i}`;
  const status = (state: string) => Buffer.from(JSON.stringify({ state, seq: 1, ts: Date.now() }));
  const topic = deviceTopic('bench', id, 'status');
  const sock = await rawClient(url, `bench-${id}`, {
    will: { topic, payload: status('offline') },
  });
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
  return sock;
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
  const edge = await startEdgeProcess([
    '--metrics-port',
    '0',
    '--workers',
    '1',
    '--fleet',
    'bench',
  ]);
  const { child, mqtt } = edge;
  const metrics = edge.metrics!;
  const socks: Socket[] = [];
  try {
    await new Promise((r) => setTimeout(r, 1000));
    const idle = await rssMiB(child.pid!);
    say(`edge up (pid ${child.pid}, ${idle} MiB); opening ${o.count} connections`);
    const t0 = performance.now();
    const batch = o.batch ?? 250;
    for (let i = 0; i < o.count; i += batch) {
      const n = Math.min(batch, o.count - i);
      socks.push(...(await Promise.all(Array.from({ length: n }, (_, k) => device(mqtt, i + k)))));
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
