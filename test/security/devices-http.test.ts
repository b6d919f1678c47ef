/**
 * The edge's HTTP listener (edge-broker/fleet/http.ts) lists every device with its traffic
 * and settings, without a login: it binds 127.0.0.1 by default. Bound there it must also
 * refuse requests that name another host, or a web page that rebinds its own name to
 * 127.0.0.1 could have a browser on the edge's host read `/devices` (same origin to the
 * browser). Answers are never cached nor sniffed as another type.
 */
import test from 'ava';
import { request } from 'node:http';
import { connect } from 'node:net';
import { MetricsHttp } from '../../edge-broker/fleet/http.js';
import { FleetMonitor } from '../../edge-broker/fleet/monitor.js';

function listener(host?: string): MetricsHttp {
  const monitor = new FleetMonitor('edge-http', { backlog: () => 0, access: () => ({}) });
  monitor.frame('f', 'cam-secret-name', 100);
  return new MetricsHttp({ monitor, edgeId: 'edge-http', port: 0, ...(host ? { host } : {}) });
}

/** GET `path` on `port` with this Host header. */
function get(
  port: number,
  path: string,
  host: string,
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host }, timeout: 20_000 });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** An HTTP/1.0 GET with no Host header at all (a scraper, never a browser). */
function getWithoutHost(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.end(`GET ${path} HTTP/1.0\r\n\r\n`));
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (out += d));
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
}

const portOf = (h: MetricsHttp) => Number(new URL(h.url!).port);

test('bound to loopback, /devices and /metrics answer only requests for a loopback host', async (t) => {
  const http = listener();
  await http.start();
  try {
    const port = portOf(http);
    for (const host of [
      `rebind.example:${port}`,
      'rebind.example',
      `localhost.rebind.example:${port}`,
      `127.0.0.1.nip.io:${port}`,
      `[::ffff:7f00:1]x:${port}`,
    ]) {
      for (const path of ['/devices', '/metrics']) {
        const r = await get(port, path, host);
        t.is(r.status, 421, `${host} ${path}`);
        t.false(r.body.includes('cam-secret-name'), `${host} ${path}`);
      }
    }
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, 'LOCALHOST']) {
      const r = await get(port, '/devices', host);
      t.is(r.status, 200, host);
      t.true(r.body.includes('cam-secret-name'), host);
    }
    t.regex(await getWithoutHost(port, '/devices'), /^HTTP\/1\.1 200[^]*cam-secret-name/);
  } finally {
    await http.stop();
  }
});

test('answers are never cached nor sniffed', async (t) => {
  const http = listener();
  await http.start();
  try {
    const port = portOf(http);
    for (const path of ['/devices', '/metrics', '/nothing']) {
      const r = await get(port, path, `127.0.0.1:${port}`);
      t.is(r.headers['x-content-type-options'], 'nosniff', path);
      t.is(r.headers['cache-control'], 'no-store', path);
    }
  } finally {
    await http.stop();
  }
});

test('bound to every interface (asked for), any host name is answered', async (t) => {
  const http = listener('0.0.0.0');
  await http.start();
  try {
    const port = portOf(http);
    const r = await get(port, '/devices', `edge.example:${port}`);
    t.is(r.status, 200);
  } finally {
    await http.stop();
  }
});
