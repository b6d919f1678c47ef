/**
 * MQTT 3.1.1 rules the broker library (Aedes 1.2) does not enforce, checked on the raw
 * bytes of every packet by the connection guard (guard.ts) before the broker sees it. A
 * violation closes the connection (and is counted); where the specification asks for a
 * CONNACK first, it is sent.
 *
 * Every packet, as soon as its fixed header is read:
 *   [MQTT-2.2.1]       no reserved packet type (0, 15)
 *   [MQTT-4.8.0-1]     no packet type only a server sends (CONNACK, SUBACK, UNSUBACK, PINGRESP)
 *   [MQTT-2.2.2-1/2]   fixed-header flags: 0010 for PUBREL, SUBSCRIBE, UNSUBSCRIBE; 0000 for
 *                      every other type but PUBLISH
 *   [MQTT-3.4-3.7]     PUBACK, PUBREC, PUBREL, PUBCOMP: remaining length 2
 *   [MQTT-3.12, 3.14]  PINGREQ, DISCONNECT: remaining length 0
 *   [MQTT-3.3.1-4]     PUBLISH: QoS is not 3
 *   [MQTT-3.3.1-2]     PUBLISH: no DUP at QoS 0
 * CONNECT:
 *   [MQTT-3.1.2-1]     protocol name MQTT (level 4) or MQIsdp (MQTT 3.1, level 3)
 *   [MQTT-3.1.2-2]     another protocol level: CONNACK 0x01, then close
 *   [MQTT-3.1.2-3]     the reserved CONNECT flag is 0
 *   [MQTT-3.1.2-13/15] no will: will QoS 0 and will retain 0
 *   [MQTT-3.1.2-14]    will QoS is not 3
 *   [MQTT-3.1.2-18/20] no user name / password in the payload unless its flag is set
 *   [MQTT-3.1.2-22]    no password flag without the user name flag
 *   [MQTT-3.1.3-8]     an empty client id needs cleanSession = 1 (else CONNACK 0x02)
 *   MQTT 3.1 (3.1)     a client id of 1 to 23 characters (else CONNACK 0x02)
 * PUBLISH, SUBSCRIBE, UNSUBSCRIBE:
 *   [MQTT-1.5.3-1/2]   UTF-8 strings are well-formed (no surrogates) and hold no U+0000
 *   [MQTT-3.3.2-2]     topic names (PUBLISH, will topic) hold no wildcards; not empty [MQTT-4.7.3-1]
 *   [MQTT-2.3.1-1]     a non-zero packet id: PUBLISH at QoS 1 and 2, SUBSCRIBE, UNSUBSCRIBE
 *   [MQTT-3.8.3-3]     SUBSCRIBE holds at least one filter; [MQTT-3.10.3-2] UNSUBSCRIBE too
 *   [MQTT-3.8.3-4]     SUBSCRIBE: requested QoS 0..2, reserved bits 0
 *   (limit)            at most `maxFilters` filters in one SUBSCRIBE or UNSUBSCRIBE
 * A second CONNECT [MQTT-3.1.0-2] and a first packet that is not CONNECT [MQTT-3.1.0-1] are
 * closed by the broker itself.
 *
 * Where the specification says MAY: control characters (U+0001..U+001F, U+007F..U+009F) in
 * strings are accepted [MQTT-1.5.3]: device ids and topics of this project never hold them,
 * and refusing them would break no attack that the ACL does not already stop.
 */

export class ProtocolViolation extends Error {
  override name = 'ProtocolViolation';
  constructor(
    message: string,
    /** CONNACK return code to send before closing, if the spec asks for one. */
    readonly connack: number | null = null,
  ) {
    super(message);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A length-prefixed UTF-8 string at `at`; throws on a malformed one. */
function readString(b: Buffer, at: number, what: string): { s: string; next: number } {
  if (at + 2 > b.length) throw new ProtocolViolation(`${what}: truncated`);
  const n = b.readUInt16BE(at);
  if (at + 2 + n > b.length) throw new ProtocolViolation(`${what}: truncated`);
  let s: string;
  try {
    s = utf8.decode(b.subarray(at + 2, at + 2 + n));
  } catch {
    throw new ProtocolViolation(`${what} is not well-formed UTF-8 [MQTT-1.5.3-1]`);
  }
  if (s.includes('\u0000')) throw new ProtocolViolation(`${what} holds U+0000 [MQTT-1.5.3-2]`);
  return { s, next: at + 2 + n };
}

function readBinary(b: Buffer, at: number, what: string): number {
  if (at + 2 > b.length) throw new ProtocolViolation(`${what}: truncated`);
  const next = at + 2 + b.readUInt16BE(at);
  if (next > b.length) throw new ProtocolViolation(`${what}: truncated`);
  return next;
}

function topicName(s: string, what: string): void {
  if (/[+#]/.test(s)) throw new ProtocolViolation(`${what} holds a wildcard [MQTT-3.3.2-2]`);
}

/** Check a CONNECT packet's variable header and payload (MQTT 3.1 and 3.1.1 only). */
export function checkConnect(body: Buffer): void {
  const proto = readString(body, 0, 'protocol name');
  let at = proto.next;
  const level = body[at];
  if (level === undefined) throw new ProtocolViolation('CONNECT: truncated');
  if (proto.s !== 'MQTT' && proto.s !== 'MQIsdp') {
    throw new ProtocolViolation(
      `unknown protocol name ${JSON.stringify(proto.s.slice(0, 16))} [MQTT-3.1.2-1]`,
    );
  }
  if (level !== 3 && level !== 4) {
    // MQTT 5 (level 5) included: this broker speaks 3.1 and 3.1.1
    throw new ProtocolViolation(`unacceptable protocol level ${level} [MQTT-3.1.2-2]`, 0x01);
  }
  if ((level === 4) !== (proto.s === 'MQTT')) {
    throw new ProtocolViolation(`protocol name ${proto.s} with level ${level} [MQTT-3.1.2-1]`);
  }
  const flags = body[at + 1];
  if (flags === undefined || at + 4 > body.length)
    throw new ProtocolViolation('CONNECT: truncated');
  at += 4; // level, flags, keep alive
  const clean = (flags & 0x02) !== 0;
  const will = (flags & 0x04) !== 0;
  const willQos = (flags >> 3) & 0x03;
  const willRetain = (flags & 0x20) !== 0;
  const hasPassword = (flags & 0x40) !== 0;
  const hasUser = (flags & 0x80) !== 0;
  if (flags & 0x01) throw new ProtocolViolation('reserved CONNECT flag is set [MQTT-3.1.2-3]');
  if (willQos === 3) throw new ProtocolViolation('will QoS 3 [MQTT-3.1.2-14]');
  if (!will && (willQos !== 0 || willRetain)) {
    throw new ProtocolViolation('will QoS or retain without a will [MQTT-3.1.2-13/15]');
  }
  if (hasPassword && !hasUser) {
    throw new ProtocolViolation('password flag without user name flag [MQTT-3.1.2-22]');
  }
  const id = readString(body, at, 'client id');
  at = id.next;
  if (id.s.length === 0 && !clean) {
    throw new ProtocolViolation('empty client id without a clean session [MQTT-3.1.3-8]', 0x02);
  }
  if (level === 3 && (id.s.length < 1 || id.s.length > 23)) {
    // MQTT 3.1 section 3.1: 1 to 23 characters, else CONNACK 2 (identifier rejected)
    throw new ProtocolViolation('MQTT 3.1 client id not 1..23 characters', 0x02);
  }
  if (will) {
    const topic = readString(body, at, 'will topic');
    topicName(topic.s, 'will topic');
    at = readBinary(body, topic.next, 'will message');
  }
  if (hasUser) at = readString(body, at, 'user name').next;
  if (hasPassword) at = readBinary(body, at, 'password');
  if (at !== body.length) {
    throw new ProtocolViolation(
      'CONNECT payload holds fields its flags do not declare [MQTT-3.1.2-18/20]',
    );
  }
}

/** Bytes of a PUBLISH body the topic check needs (given at least its first 2). */
export function publishTopicBytes(body: Buffer): number {
  return 2 + body.readUInt16BE(0);
}

export function checkPublishTopic(body: Buffer): void {
  const t = readString(body, 0, 'topic name').s;
  if (t.length === 0) throw new ProtocolViolation('empty topic name [MQTT-4.7.3-1]');
  topicName(t, 'topic name');
}

/** SUBSCRIBE (with QoS bytes) and UNSUBSCRIBE bodies: every filter well-formed, and at
 * most `maxFilters` of them (a policy of this broker: the check stops at the first one
 * over, so a packet of 100,000 filters costs no more than one of `maxFilters`). */
export function checkFilters(body: Buffer, withQos: boolean, maxFilters = Infinity): void {
  const what = withQos ? 'SUBSCRIBE' : 'UNSUBSCRIBE';
  if (body.length < 2) throw new ProtocolViolation(`${what}: no packet id`);
  if (body.readUInt16BE(0) === 0) {
    throw new ProtocolViolation(`${what} with packet id 0 [MQTT-2.3.1-1]`);
  }
  let at = 2;
  let n = 0;
  for (; at < body.length;) {
    if (++n > maxFilters) {
      throw new ProtocolViolation(`over ${maxFilters} topic filters in one packet`);
    }
    at = readString(body, at, 'topic filter').next;
    if (withQos) {
      const qos = body[at];
      if (qos === undefined) throw new ProtocolViolation('SUBSCRIBE: truncated');
      if (qos > 2) {
        throw new ProtocolViolation(
          'SUBSCRIBE: requested QoS over 2 or reserved bits [MQTT-3.8.3-4]',
        );
      }
      at++;
    }
  }
  if (n === 0) {
    throw new ProtocolViolation(
      `${what} without a topic filter [${withQos ? 'MQTT-3.8.3-3' : 'MQTT-3.10.3-2'}]`,
    );
  }
}

/** Packet types a server receives (MQTT 3.1.1 section 2.2.1), with their fixed-header flags
 * [MQTT-2.2.2-1/2] and, where fixed, their remaining length. PUBLISH's flags are its own. */
const SERVER_BOUND: Record<number, { name: string; flags: number | null; length: number | null }> =
  {
    1: { name: 'CONNECT', flags: 0, length: null },
    3: { name: 'PUBLISH', flags: null, length: null },
    4: { name: 'PUBACK', flags: 0, length: 2 },
    5: { name: 'PUBREC', flags: 0, length: 2 },
    6: { name: 'PUBREL', flags: 2, length: 2 },
    7: { name: 'PUBCOMP', flags: 0, length: 2 },
    8: { name: 'SUBSCRIBE', flags: 2, length: null },
    10: { name: 'UNSUBSCRIBE', flags: 2, length: null },
    12: { name: 'PINGREQ', flags: 0, length: 0 },
    14: { name: 'DISCONNECT', flags: 0, length: 0 },
  };

/**
 * Check a packet's fixed header as soon as its remaining length is known: a packet type a
 * server never receives (reserved 0 and 15, or one only servers send), wrong fixed-header
 * flags, a remaining length its type does not allow, PUBLISH at QoS 3 or at QoS 0 with DUP.
 */
export function checkFixedHeader(type: number, flags: number, length: number): void {
  const t = SERVER_BOUND[type];
  if (!t) {
    throw new ProtocolViolation(
      type === 0 || type === 15
        ? `reserved packet type ${type} [MQTT-2.2.1]`
        : `packet type ${type} is never sent to a server [MQTT-4.8.0-1]`,
    );
  }
  if (t.flags !== null && flags !== t.flags) {
    throw new ProtocolViolation(`${t.name} with fixed-header flags ${flags} [MQTT-2.2.2-1/2]`);
  }
  if (t.length !== null && length !== t.length) {
    throw new ProtocolViolation(`${t.name} with remaining length ${length}, not ${t.length}`);
  }
  if (type === 3) {
    const qos = (flags >> 1) & 3;
    if (qos === 3) throw new ProtocolViolation('PUBLISH at QoS 3 [MQTT-3.3.1-4]');
    if (qos === 0 && flags & 8)
      throw new ProtocolViolation('PUBLISH at QoS 0 with DUP [MQTT-3.3.1-2]');
  }
}

/** A PUBLISH at QoS 1 or 2 carries a non-zero packet id after its topic [MQTT-2.3.1-1]. */
export function checkPublishId(body: Buffer, topicBytes: number): void {
  if (body.length < topicBytes + 2) {
    throw new ProtocolViolation('PUBLISH at QoS 1 or 2 without a packet id [MQTT-2.3.1-1]');
  }
  if (body.readUInt16BE(topicBytes) === 0) {
    throw new ProtocolViolation('PUBLISH with packet id 0 [MQTT-2.3.1-1]');
  }
}
