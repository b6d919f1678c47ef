/**
 * Debian's mosquitto as a reference broker (MQTT 5, `$share` subscriptions): started on
 * a free loopback port with a config of our own, for the shared-subscription workers'
 * tests and the broker fan-in comparison of `bench throughput`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { connect, createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';

export const MOSQUITTO = '/usr/sbin/mosquitto';

/** A TCP port free on 127.0.0.1 now. */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** Start mosquitto with its config in `dir`; resolves once it accepts connections. */
export async function startMosquitto(
  dir: string,
  extraConfig = '',
): Promise<{ proc: ChildProcess; url: string }> {
  if (!existsSync(MOSQUITTO)) throw new Error(`${MOSQUITTO} missing: apt-get install mosquitto`);
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  await writeFile(
    conf,
    `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n${extraConfig}`,
  );
  const proc = spawn(MOSQUITTO, ['-c', conf], { stdio: 'ignore' });
  const up = () =>
    new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1')
        .on('connect', () => (s.destroy(), r(true)))
        .on('error', () => r(false));
    });
  for (let i = 0; i < 100 && !(await up()); i++) await new Promise((r) => setTimeout(r, 50));
  if (proc.exitCode !== null) throw new Error(`mosquitto exited (${proc.exitCode})`);
  return { proc, url: `mqtt://127.0.0.1:${port}` };
}
