/**
 * MQTT 3.1.1 rules the broker library (Aedes 1.2) does not enforce, checked on the raw
 * bytes of CONNECT, PUBLISH, SUBSCRIBE and UNSUBSCRIBE packets by the connection guard
 * (guard.ts) before the broker sees them. A violation closes the connection; an empty
 * client id without a clean session first gets CONNACK 0x02 (identifier rejected).
 *
 *   [MQTT-1.5.3-1/2]  UTF-8 strings are well-formed (no surrogates) and hold no U+0000
 *   [MQTT-3.1.2-3]    the reserved CONNECT flag is 0
 *   [MQTT-3.1.2-13/15] no will: will QoS 0 and will retain 0
 *   [MQTT-3.1.2-14]   will QoS is not 3
 *   [MQTT-3.1.2-18/20] no user name / password in the payload unless its flag is set
 *   [MQTT-3.1.2-22]   no password flag without the user name flag
 *   [MQTT-3.1.3-8]    an empty client id needs cleanSession = 1 (else CONNACK 0x02)
 *   [MQTT-3.3.2-2]    topic names (PUBLISH, will topic) hold no wildcards
 * and one limit of this broker: at most N topic filters in one SUBSCRIBE or UNSUBSCRIBE.
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
  if (level !== 3 && level !== 4) return; // MQTT 5 has its own rules; the parser refuses others
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
  let at = 2; // packet id
  for (let n = 1; at < body.length; n++) {
    if (n > maxFilters) {
      throw new ProtocolViolation(`over ${maxFilters} topic filters in one packet`);
    }
    at = readString(body, at, 'topic filter').next + (withQos ? 1 : 0);
  }
  if (at > body.length) throw new ProtocolViolation('SUBSCRIBE: truncated');
}
