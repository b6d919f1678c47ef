/**
 * Starting and stopping the real commands: a busy port is a one-line error naming its
 * flag; a URL that is not a broker's is refused; Ctrl-C (a real SIGINT) on the agent and
 * on a demo that runs until stopped prints the summary.
 */
import test from 'ava';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { connectAsync } from 'mqtt';
import { deviceFilter } from '../../core/wire/topics.js';
import { DEFAULT_FLEET } from '../../fleet-config/schema.js';
import { testEdge } from '../helpers/edge.js';
import { runCli } from '../helpers/cli.js';
import { cliChild } from './child.js';

/** A port held by the test for as long as the returned server listens. */
async function heldPort(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as AddressInfo).port, server };
}

const lastLine = (s: string) => s.trim().split('\n').at(-1) ?? '';

for (const [flag, other] of [
  ['--ws-port', '--port'],
  ['--port', '--ws-port'],
] as const) {
  test(`edge: a busy ${flag} is a one-line error naming the flag`, async (t) => {
    const held = await heldPort();
    t.teardown(() => held.server.close());
    const r = await runCli(
      ['edge', '--host', '127.0.0.1', flag, String(held.port), other, '0', '--no-metrics'],
      { timeoutMs: 60_000 },
    );
    t.not(r.code, 0);
    t.regex(r.stderr, new RegExp(`port ${held.port} is in use \\(${flag}\\)`));
    t.notRegex(r.stderr, /Unhandled|EADDRINUSE|\n\s+at /);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  });
}

test('demo: a busy port it was given is a one-line error naming the flag', async (t) => {
  const held = await heldPort();
  t.teardown(() => held.server.close());
  const r = await runCli(['demo', '--frames', '3', '--port', '0', '--ws-port', String(held.port)], {
    timeoutMs: 90_000,
  });
  t.not(r.code, 0);
  t.regex(r.stderr, new RegExp(`port ${held.port} is in use \\(--ws-port\\)`));
  t.notRegex(r.stderr, /Unhandled|\n\s+at /);
});

for (const cmd of ['agent', 'worker']) {
  test(`${cmd}: --url htp://... is refused, naming the broker URL schemes`, async (t) => {
    const args = cmd === 'agent' ? ['agent', '--device', 'd1'] : ['worker'];
    const r = await runCli([...args, '--url', 'htp://edge.local:1883'], { timeoutMs: 60_000 });
    t.not(r.code, 0);
    t.regex(r.stderr, /htp:\/\/edge\.local:1883/);
    t.regex(r.stderr, /mqtt:\/\/, mqtts:\/\/, ws:\/\/ or wss:\/\//);
  });
}

test('demo --frames 0 runs until Ctrl-C, then prints the summary', async (t) => {
  const c = cliChild(
    [
      'demo',
      '--frames',
      '0',
      '--devices',
      '1',
      '--fps',
      '20',
      '--port',
      '0',
      '--ws-port',
      '0',
      '--json',
    ],
    { env: { LOG_LEVEL: 'warn' } },
  );
  t.teardown(() => c.signal('SIGKILL'));
  const [, url] = await c.waitFor(/edge broker on (mqtt:\/\/\S+)/, 'stderr');
  // a subscriber sees results flow: the demo is running, with no end of its own
  const sub = await connectAsync(url!, { reconnectPeriod: 0 });
  t.teardown(() => sub.end(true));
  let results = 0;
  const enough = new Promise<void>((resolve) =>
    sub.on('message', () => {
      if (++results === 5) resolve();
    }),
  );
  await sub.subscribeAsync(deviceFilter('result', DEFAULT_FLEET));
  await enough;
  c.signal('SIGINT');
  const exit = await c.exited;
  t.is(exit.code, 0, c.stderr);
  const s = JSON.parse(lastLine(c.stdout)) as { frames: number; results: number };
  t.true(s.results >= 5, JSON.stringify(s));
  t.true(s.frames >= s.results);
  t.regex(c.stderr, /summary: \d+\/\d+ results/);
});

test('agent: Ctrl-C prints the summary; --verbose prints a rounded line per result', async (t) => {
  const edge = await testEdge();
  t.teardown(() => edge.close());
  const c = cliChild(
    ['agent', '--device', 'cam-sig', '--url', edge.url, '--loop', '--fps', '20', '--verbose'],
    { env: { LOG_LEVEL: 'warn' } },
  );
  t.teardown(() => c.signal('SIGKILL'));
  const [line] = await c.waitFor(/^frame \d+: .*$/m);
  t.regex(line!, /^frame \d+: \w+ \(\d+(\.\d{1,3})?\) in \d+(\.\d)? ms$/);
  c.signal('SIGINT');
  const exit = await c.exited;
  t.is(exit.code, 0, c.stderr);
  const m = /^summary: (\{.*\})$/m.exec(c.stdout);
  t.truthy(m, c.stdout.slice(-500));
  const s = JSON.parse(m![1]!) as { sent: number; results: number };
  t.true(s.results >= 1 && s.sent >= s.results, JSON.stringify(s));
});

test('agent: waiting for an edge that is not up, Ctrl-C stops it with the summary', async (t) => {
  const held = await heldPort();
  const port = held.port;
  await new Promise((r) => held.server.close(r)); // nothing listens there now
  const c = cliChild(['agent', '--device', 'cam-wait', '--url', `mqtt://127.0.0.1:${port}`], {
    env: { LOG_LEVEL: 'info', SPLITFLEET_LOG_FORMAT: 'json' },
  });
  t.teardown(() => c.signal('SIGKILL'));
  await c.waitFor(/edge not reachable: retrying/, 'stderr');
  c.signal('SIGINT');
  const exit = await c.exited;
  t.is(exit.code, 0, c.stderr);
  t.regex(c.stdout, /^summary: \{"sent":0,/m);
});

test('agent: no line per frame by default', async (t) => {
  const edge = await testEdge();
  t.teardown(() => edge.close());
  const r = await runCli(
    ['agent', '--device', 'cam-quiet', '--url', edge.url, '--frames', '6', '--fps', '0'],
    {
      timeoutMs: 120_000,
    },
  );
  t.is(r.code, 0, r.stderr);
  t.notRegex(r.stdout, /^frame /m);
  const s = JSON.parse(/^summary: (\{.*\})$/m.exec(r.stdout)![1]!) as {
    sent: number;
    results: number;
  };
  t.is(s.sent, 6);
  t.is(s.results, 6);
});
