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

// Fixed headers, packet ids and remaining lengths, per packet type [MQTT-2.2.2-1/2,
// MQTT-2.3.1-1]: a packet that breaks one closes the connection; nothing comes back for it.
const body = (...parts: (Buffer | number[])[]) =>
  Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));
const badPackets: [string, Buffer][] = [
  ['PUBLISH at QoS 1 with packet id 0 [MQTT-2.3.1-1]', packet(0x32, body(str('a/b'), u16(0), [1]))],
  ['PUBLISH at QoS 2 with packet id 0 [MQTT-2.3.1-1]', packet(0x34, body(str('a/b'), u16(0), [1]))],
  ['PUBLISH at QoS 1 without a packet id [MQTT-2.3.1-1]', packet(0x32, body(str('a/b')))],
  ['PUBLISH at QoS 0 with DUP set [MQTT-3.3.1-2]', packet(0x38, body(str('a/b'), [1]))],
  ['PUBLISH at QoS 3 [MQTT-3.3.1-4]', packet(0x36, body(str('a/b'), u16(1), [1]))],
  ['SUBSCRIBE with packet id 0 [MQTT-2.3.1-1]', packet(0x82, body(u16(0), str('a/+'), [0]))],
  ['SUBSCRIBE without a filter [MQTT-3.8.3-3]', packet(0x82, body(u16(1)))],
  ['SUBSCRIBE with QoS 3 [MQTT-3.8.3-4]', packet(0x82, body(u16(1), str('a/+'), [3]))],
  [
    'SUBSCRIBE with reserved bits in its QoS byte [MQTT-3.8.3-4]',
    packet(0x82, body(u16(1), str('a'), [0x40])),
  ],
  [
    'SUBSCRIBE with fixed-header flags 0000 [MQTT-3.8.1-1]',
    packet(0x80, body(u16(1), str('a'), [0])),
  ],
  ['UNSUBSCRIBE with packet id 0 [MQTT-2.3.1-1]', packet(0xa2, body(u16(0), str('a/+')))],
  ['UNSUBSCRIBE without a filter [MQTT-3.10.3-2]', packet(0xa2, body(u16(1)))],
  [
    'UNSUBSCRIBE with fixed-header flags 0000 [MQTT-3.10.1-1]',
    packet(0xa0, body(u16(1), str('a'))),
  ],
  ['PUBACK with remaining length 3 [MQTT-2.2.2-2, 3.4.2]', packet(0x40, body(u16(1), [0]))],
  ['PUBACK with remaining length 1', packet(0x40, body([1]))],
  ['PUBREC with remaining length 3', packet(0x50, body(u16(1), [0]))],
  ['PUBREL with remaining length 3', packet(0x62, body(u16(1), [0]))],
  ['PUBREL with fixed-header flags 0000 [MQTT-3.6.1-1]', packet(0x60, body(u16(1)))],
  ['PUBCOMP with remaining length 3', packet(0x70, body(u16(1), [0]))],
  ['PUBACK with flags set [MQTT-2.2.2-2]', packet(0x41, body(u16(1)))],
  ['PINGREQ with remaining length 1 [MQTT-3.12]', packet(0xc0, body([0]))],
  ['PINGREQ with flags set [MQTT-2.2.2-2]', packet(0xc1, body())],
  ['DISCONNECT with remaining length 1 [MQTT-3.14]', packet(0xe0, body([0]))],
  ['a second CONNECT [MQTT-3.1.0-2]', connectPacket({ clientId: 'again' })],
  ['a CONNACK from the client [MQTT-4.8.0-1]', packet(0x20, body([0, 0]))],
  ['a SUBACK from the client', packet(0x90, body(u16(1), [0]))],
  ['a PINGRESP from the client', packet(0xd0, body())],
  ['packet type 0 (reserved) [MQTT-2.2.1]', packet(0x00, body())],
  ['packet type 15 (reserved) [MQTT-2.2.1]', packet(0xf0, body())],
];
for (const [what, p] of badPackets) {
  test(`${what} closes the connection`, async (t) => {
    const before = broker.access.stats.violations;
    const r = await exchange(connectPacket({ clientId: `c-${Math.random()}` }), p);
    t.deepEqual(r.bytes.subarray(0, 4), CONNACK_OK);
    t.is(r.bytes.length, 4, 'nothing after the CONNACK');
    t.true(r.closed);
    t.true(broker.access.stats.violations > before, 'counted as a violation');
  });
}

test('packets that keep every rule pass: QoS 1/2 PUBLISH, PUBREL, PINGREQ, UNSUBSCRIBE', async (t) => {
  const r = await exchange(
    connectPacket({ clientId: `ok-${Math.random()}` }),
    packet(0x32, body(str('a/b'), u16(7), [1])),
    packet(0x34, body(str('a/b'), u16(8), [1])),
    packet(0x62, body(u16(8))),
    packet(0xc0, body()),
    packet(0xa2, body(u16(9), str('a/+'))),
  );
  t.false(r.closed);
  const types = [...r.bytes.subarray(4)].filter((_, i, a) => i === 0 || a[i - 2] !== undefined);
  t.true(r.bytes.includes(0x40), 'PUBACK');
  t.true(r.bytes.includes(0x50), 'PUBREC');
  t.true(r.bytes.includes(0x70), 'PUBCOMP');
  t.true(r.bytes.includes(0xd0), 'PINGRESP');
  t.true(r.bytes.includes(0xb0), 'UNSUBACK');
  t.true(types.length > 0);
});

test('a CONNECT with an unknown protocol level gets CONNACK 0x01, then a close [MQTT-3.1.2-2]', async (t) => {
  const c = packet(0x10, body(str('MQTT'), [5, 0x02], u16(30), str('v5')));
  const r = await exchange(c);
  t.deepEqual(r.bytes, Buffer.from([0x20, 0x02, 0x00, 0x01]));
  t.true(r.closed);
  const r2 = await exchange(packet(0x10, body(str('MQTT'), [2, 0x02], u16(30), str('v2'))));
  t.deepEqual(r2.bytes, Buffer.from([0x20, 0x02, 0x00, 0x01]));
});

test('a CONNECT with a wrong protocol name is closed without a CONNACK [MQTT-3.1.2-1]', async (t) => {
  const r = await exchange(packet(0x10, body(str('MQTX'), [4, 0x02], u16(30), str('x'))));
  t.is(r.bytes.length, 0);
  t.true(r.closed);
  const r31 = await exchange(packet(0x10, body(str('MQTT'), [3, 0x02], u16(30), str('x'))));
  t.is(r31.bytes.length, 0, 'level 3 must be MQIsdp');
});

test('an MQTT 3.1 client (MQIsdp, level 3) connects, publishes and subscribes', async (t) => {
  const c = packet(0x10, body(str('MQIsdp'), [3, 0x02], u16(30), str('old-device')));
  const r = await exchange(c, packet(0x32, body(str('a/b'), u16(3), [1])), subscribe('a/+'));
  t.deepEqual(r.bytes.subarray(0, 4), CONNACK_OK);
  t.true(r.bytes.includes(0x40), 'PUBACK');
  t.true(r.bytes.includes(0x90), 'SUBACK');
  t.false(r.closed);
});

test('MQTT 3.1: a client id of more than 23 characters gets CONNACK 0x02 (3.1 section 3.1)', async (t) => {
  const id = 'x'.repeat(24);
  const r = await exchange(packet(0x10, body(str('MQIsdp'), [3, 0x02], u16(30), str(id))));
  t.deepEqual(r.bytes, Buffer.from([0x20, 0x02, 0x00, 0x02]));
  t.true(r.closed);
});

test('control characters (U+0001..U+001F, U+007F..U+009F) in topics are accepted [MQTT-1.5.3: MAY]', async (t) => {
  const r = await exchange(
    connectPacket({ clientId: `cc-${Math.random()}` }),
    publish('a/\u0001\u001f\u007f\u0085'),
    subscribe('a/\u0007'),
  );
  t.deepEqual(r.bytes.subarray(0, 4), CONNACK_OK);
  t.true(r.bytes.includes(0x90), 'SUBACK');
  t.false(r.closed);
});
