/**
 * The link between the device's and the edge's network namespaces: tc netem on a veth
 * pair where the kernel has netem, otherwise scripts/linkemu.py (a userspace emulator that
 * owns a TUN device in each namespace and forwards IP packets through a bounded queue, a
 * serializer at the rate, random loss and a delay line). Reshaped per profile, its bytes
 * and packets counted per run (IP packets: headers, ACKs and retransmissions included).
 */
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PROJECT_ROOT } from '../../core/paths.js';
import type { LinkProfile } from './types.js';

const PY = process.env.SPLITFLEET_PYTHON ?? '/usr/bin/python3';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function sh(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

/** Why network namespaces cannot be made here, or null when they can. */
export function namespacesUnavailable(): string | null {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'needs root (CAP_NET_ADMIN) for network namespaces';
  const ns = `sf-probe-${process.pid}`;
  const r = sh('ip', ['netns', 'add', ns]);
  if (!r.ok) return `ip netns add failed: ${r.out.trim()}`;
  sh('ip', ['netns', 'del', ns]);
  return null;
}

/** Whether tc netem works in a scratch namespace. */
export function netemWorks(): boolean {
  const ns = `sf-netem-${process.pid}`;
  if (!sh('ip', ['netns', 'add', ns]).ok) return false;
  try {
    return (
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']).ok &&
      sh('tc', ['-n', ns, 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms']).ok
    );
  } finally {
    sh('ip', ['netns', 'del', ns]);
  }
}

export interface WireCount {
  up: { bytes: number; packets: number; lost: number };
  down: { bytes: number; packets: number; lost: number };
}

/** The link between the two namespaces: reshaped per profile, counted per run. */
export interface Link {
  kind: 'netem' | 'linkemu';
  shape(p: LinkProfile): Promise<void>;
  reset(): Promise<void>;
  count(): Promise<WireCount>;
  close(): Promise<void>;
}

export const DEV_IP = '10.204.0.1';
export const EDGE_IP = '10.204.0.2';

export async function linkemu(devNs: string, edgeNs: string, p: LinkProfile): Promise<Link> {
  const child = spawn(
    PY,
    [
      join(PROJECT_ROOT, 'scripts', 'linkemu.py'),
      '--ns-a',
      devNs,
      '--ns-b',
      edgeNs,
      '--addr-a',
      DEV_IP,
      '--addr-b',
      EDGE_IP,
      '--rate',
      String(p.kbps * 1000),
      '--delay-ms',
      String(p.delayMs),
      '--loss',
      String(p.loss),
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const lines = createInterface({ input: child.stdout! });
  const waiting: ((l: string) => void)[] = [];
  const queued: string[] = [];
  lines.on('line', (l) => {
    const w = waiting.shift();
    if (w) w(l);
    else queued.push(l);
  });
  const next = (ms = 10_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`linkemu did not answer: ${err}`)), ms);
      const take = (l: string) => {
        clearTimeout(t);
        try {
          resolve(JSON.parse(l) as Record<string, unknown>);
        } catch {
          reject(new Error(`linkemu: ${l}`));
        }
      };
      const q = queued.shift();
      if (q !== undefined) take(q);
      else waiting.push(take);
    });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const ready = await Promise.race([
    next(),
    exited.then(() => Promise.reject(new Error(`linkemu exited: ${err.trim()}`))),
  ]);
  if (!ready.ready) throw new Error(`linkemu: ${JSON.stringify(ready)}`);
  const ask = async (cmd: string) => {
    child.stdin!.write(`${cmd}\n`);
    return next();
  };
  type Dir = { bytes: number; packets: number; lost: number };
  return {
    kind: 'linkemu',
    shape: async (q) => {
      // the queue: 0.5 s of the uplink's rate, at least 32 KiB (linkemu's default)
      const queue = Math.max(32768, Math.round((q.kbps * 1000) / 8 / 2));
      const down = (q.downKbps ?? q.kbps) * 1000;
      await ask(
        `set rate=${q.kbps * 1000} ratedown=${down} delay=${q.delayMs} loss=${q.loss} queue=${queue}`,
      );
    },
    reset: async () => void (await ask('reset')),
    count: async () => {
      const s = (await ask('stats')) as { up: Dir; down: Dir };
      const pick = (d: Dir) => ({ bytes: d.bytes, packets: d.packets, lost: d.lost });
      return { up: pick(s.up), down: pick(s.down) };
    },
    close: async () => {
      child.stdin!.end('quit\n');
      await Promise.race([exited, sleep(3000)]);
      child.kill('SIGKILL');
    },
  };
}

/** veth + tc netem on both ends (where the kernel has netem). Untested here: this
 * machine's kernel has no sch_netem. */
export async function netemLink(devNs: string, edgeNs: string): Promise<Link> {
  const [vd, ve] = ['sfld0', 'sfle0'];
  const run = (args: string[]) => {
    const r = sh('ip', args);
    if (!r.ok) throw new Error(`ip ${args.join(' ')}: ${r.out}`);
  };
  run(['link', 'add', vd, 'netns', devNs, 'type', 'veth', 'peer', 'name', ve, 'netns', edgeNs]);
  for (const [ns, dev, me] of [
    [devNs, vd, DEV_IP],
    [edgeNs, ve, EDGE_IP],
  ] as const) {
    run(['-n', ns, 'link', 'set', 'lo', 'up']);
    run(['-n', ns, 'addr', 'add', `${me}/30`, 'dev', dev]);
    run(['-n', ns, 'link', 'set', dev, 'up']);
  }
  let base: WireCount | null = null;
  const read = (): WireCount => {
    const stat = (ns: string, dev: string) => {
      const j = JSON.parse(sh('ip', ['-n', ns, '-s', '-j', 'link', 'show', 'dev', dev]).out) as {
        stats64: { tx: { bytes: number; packets: number; dropped: number } };
      }[];
      const tx = j[0]!.stats64.tx;
      // IP bytes: less the 14 B Ethernet header of each packet
      return { bytes: tx.bytes - 14 * tx.packets, packets: tx.packets, lost: tx.dropped };
    };
    return { up: stat(devNs, vd), down: stat(edgeNs, ve) };
  };
  return {
    kind: 'netem',
    shape: async (p) => {
      for (const [ns, dev, kbps] of [
        [devNs, vd, p.kbps],
        [edgeNs, ve, p.downKbps ?? p.kbps],
      ] as const) {
        const limit = Math.max(50, Math.round((kbps * 1000) / 8 / 2 / 1500));
        const args = ['-n', ns, 'qdisc', 'replace', 'dev', dev, 'root', 'netem'];
        args.push('rate', `${kbps}kbit`, 'delay', `${p.delayMs}ms`, 'limit', String(limit));
        if (p.loss > 0) args.push('loss', `${p.loss * 100}%`);
        const r = sh('tc', args);
        if (!r.ok) throw new Error(`tc ${args.join(' ')}: ${r.out}`);
      }
    },
    reset: async () => void (base = read()),
    count: async () => {
      const now = read();
      const b = base ?? {
        up: { bytes: 0, packets: 0, lost: 0 },
        down: { bytes: 0, packets: 0, lost: 0 },
      };
      const d = (k: 'up' | 'down') => ({
        bytes: now[k].bytes - b[k].bytes,
        packets: now[k].packets - b[k].packets,
        lost: now[k].lost - b[k].lost,
      });
      return { up: d('up'), down: d('down') };
    },
    close: async () => undefined,
  };
}

/** Two namespaces of their own for the device and the edge (IPv6 off); `remove` deletes them. */
export function makeNamespaces(devNs: string, edgeNs: string): void {
  for (const ns of [devNs, edgeNs]) {
    const r = sh('ip', ['netns', 'add', ns]);
    if (!r.ok) throw new Error(`ip netns add ${ns}: ${r.out}`);
    sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
    sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1']);
  }
}

export function removeNamespaces(...names: string[]): void {
  for (const ns of names) sh('ip', ['netns', 'del', ns]);
}

/** The link of `want` ('auto': netem where the kernel has it), shaped to `first`. */
export async function openLink(
  devNs: string,
  edgeNs: string,
  want: 'auto' | 'netem' | 'linkemu',
  first: LinkProfile,
): Promise<Link> {
  const useNetem = want === 'netem' || (want === 'auto' && netemWorks());
  const link = useNetem ? await netemLink(devNs, edgeNs) : await linkemu(devNs, edgeNs, first);
  await link.shape(first);
  return link;
}
