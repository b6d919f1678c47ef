/**
 * MQTT 3.1.1 rules Aedes leaves out, enforced by the edge's connection guard
 * (edge-broker/compliance.ts), tested with raw packets over TCP: each bad CONNECT,
 * PUBLISH or SUBSCRIBE closes the connection before the broker sees it; an empty client
 * id without a clean session gets CONNACK 0x02 first; good packets pass.
 */
import test from 'ava';
import { connect, type Socket } from 'node:net';
import { startBroker, type EdgeBroker } from '../../edge-broker/broker.js';

let broker: EdgeBroker;
let port: number;
test.before(async () => {
  broker = await startBroker({ port: 0, wsPort: null });
  port = Number(new URL(broker.url).port);
});
test.after.always(() => broker?.close());

const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
/** A length-prefixed string from raw bytes (so tests can send invalid UTF-8). */
const str = (b: Buffer | string) => {
  const bytes = typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
  return Buffer.concat([u16(bytes.length), bytes]);
};
function packet(first: number, body: Buffer): Buffer {
  const len: number[] = [];
  let n = body.length;
  do {
    let d = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) d |= 0x80;
    len.push(d);
  } while (n > 0);
  return Buffer.concat([Buffer.from([first, ...len]), body]);
}
interface Conn {
  flags?: number;
  clientId?: Buffer | string;
  will?: { topic: Buffer | string; message?: string };
  username?: Buffer | string;
  password?: string;
}
function connectPacket(c: Conn): Buffer {
  let flags = c.flags ?? 0x02;
  if (c.flags === undefined) {
    if (c.will) flags |= 0x04;
    if (c.username !== undefined) flags |= 0x80;
    if (c.password !== undefined) flags |= 0x40;
  }
  const parts = [str('MQTT'), Buffer.from([4, flags]), u16(30), str(c.clientId ?? 'raw-client')];
  if (c.will) parts.push(str(c.will.topic), str(c.will.message ?? 'bye'));
  if (c.username !== undefined) parts.push(str(c.username));
  if (c.password !== undefined) parts.push(str(c.password));
  return packet(0x10, Buffer.concat(parts));
}
const publish = (topic: Buffer | string) =>
  packet(0x30, Buffer.concat([str(topic), Buffer.from('x')]));
const subscribe = (filter: Buffer | string) =>
  packet(0x82, Buffer.concat([u16(1), str(filter), Buffer.from([0])]));

/** Send packets; resolve with what came back and whether the broker closed within 1.5 s. */
function exchange(...packets: Buffer[]): Promise<{ bytes: Buffer; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const sock: Socket = connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    let closed = false;
    sock.on('data', (d) => got.push(d));
    sock.on('error', () => undefined);
    sock.on('close', () => (closed = true));
    const send = async () => {
      for (const [k, p] of packets.entries()) {
        sock.write(p);
        // after the CONNECT, wait for the broker's answer (bounded) before the next packet
        const until = Date.now() + (k === 0 && packets.length > 1 ? 5000 : 100);
        while (Date.now() < until && !(k === 0 && packets.length > 1 && got.length > 0)) {
          await new Promise((r) => setTimeout(r, 20));
        }
      }
      setTimeout(() => {
        sock.destroy();
        resolve({ bytes: Buffer.concat(got), closed });
      }, 1500);
    };
    sock.on('connect', () => void send().catch(reject));
  });
}

const CONNACK_OK = Buffer.from([0x20, 0x02, 0x00, 0x00]);
const SURROGATE = Buffer.from([0x61, 0xed, 0xa0, 0x80]); // "a" + an encoded U+D800

test('a good CONNECT, PUBLISH and SUBSCRIBE pass', async (t) => {
  const r = await exchange(connectPacket({ clientId: 'good' }), publish('a/b'), subscribe('a/+'));
  t.deepEqual(r.bytes.subarray(0, 4), CONNACK_OK);
  t.is(r.bytes[4], 0x90, 'SUBACK');
  t.false(r.closed);
});

test('an empty client id without a clean session gets CONNACK 0x02 and a close [MQTT-3.1.3-8]', async (t) => {
  const r = await exchange(connectPacket({ clientId: '', flags: 0x00 }));
  t.deepEqual(r.bytes, Buffer.from([0x20, 0x02, 0x00, 0x02]));
  t.true(r.closed);
  // with a clean session it is fine
  t.deepEqual((await exchange(connectPacket({ clientId: '', flags: 0x02 }))).bytes, CONNACK_OK);
});

const badConnects: [string, Conn][] = [
  ['U+0000 in the client id', { clientId: 'a\u0000b' }],
  ['a surrogate in the client id', { clientId: SURROGATE }],
  ['invalid UTF-8 in the user name', { username: Buffer.from([0xc3, 0x28]), password: 'p' }],
  ['a surrogate in the will topic', { will: { topic: SURROGATE } }],
  ['a wildcard in the will topic', { will: { topic: 'a/#' } }],
  ['will QoS 3 [MQTT-3.1.2-14]', { flags: 0x02 | 0x04 | 0x18, will: { topic: 'w' } }],
  ['will retain without a will [MQTT-3.1.2-15]', { flags: 0x02 | 0x20 }],
  ['a password without a user name [MQTT-3.1.2-22]', { flags: 0x02 | 0x40, password: 'p' }],
  ['a user name its flag does not declare [MQTT-3.1.2-18]', { flags: 0x02, username: 'u' }],
  ['the reserved flag [MQTT-3.1.2-3]', { flags: 0x03 }],
];
for (const [what, c] of badConnects) {
  test(`CONNECT with ${what} is closed without a CONNACK`, async (t) => {
    const before = broker.access.stats.violations;
    const r = await exchange(connectPacket(c));
    t.is(r.bytes.length, 0);
    t.true(r.closed);
    t.true(broker.access.stats.violations > before);
  });
}

const badTopics: [string, Buffer][] = [
  ['PUBLISH to a topic with U+0000', publish('a\u0000b')],
  ['PUBLISH to a topic with a surrogate', publish(SURROGATE)],
  ['PUBLISH to a topic with a wildcard', publish('a/+')],
  ['PUBLISH to an empty topic', publish('')],
  ['SUBSCRIBE to a filter with a surrogate', subscribe(SURROGATE)],
];
for (const [what, p] of badTopics) {
  test(`${what} closes the connection`, async (t) => {
    const r = await exchange(connectPacket({ clientId: `c-${Math.random()}` }), p);
    t.deepEqual(r.bytes.subarray(0, 4), CONNACK_OK);
    t.is(r.bytes.length, 4, 'nothing after the CONNACK');
    t.true(r.closed);
  });
}
