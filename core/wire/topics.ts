/**
 * Topic layout: the one place topic strings are built and parsed.
 *
 *   <base>/<fleet>/device/<deviceId>/features   device -> edge   msgpack Frame (v1), QoS 1
 *   <base>/<fleet>/device/<deviceId>/f          device -> edge   v2 frame or batch (frame-v2.ts), QoS 1
 *   <base>/<fleet>/device/<deviceId>/ctx        device -> edge   JSON ContextAnnounce (context.ts), QoS 1
 *   <base>/<fleet>/device/<deviceId>/a          edge -> device   msgpack compact answer or ContextAck, QoS 1
 *   <base>/<fleet>/device/<deviceId>/result     edge -> anyone   JSON Result, QoS 1
 *   <base>/<fleet>/device/<deviceId>/error      edge -> device   JSON FrameErrorMessage, QoS 1
 *   <base>/<fleet>/device/<deviceId>/status     device           JSON DeviceStatus, retained, last will
 *   <base>/<fleet>/device/<deviceId>/config     edge -> device   JSON ConfigMessage, retained
 *   <base>/<fleet>/device/<deviceId>/fetch      device -> edge   JSON FetchRequest (ota.ts), QoS 1
 *   <base>/<fleet>/device/<deviceId>/chunk      edge -> device   msgpack Chunk (ota.ts), QoS 1
 *   <base>/<fleet>/device/<deviceId>/request/<op>   -> device   JSON request (op: ping, get-config, ...)
 *   <base>/<fleet>/device/<deviceId>/response/<op>  device ->   JSON {status, data, error, id}
 *     (response/config: the device's answer to each config it receives)
 *   <base>/<fleet>/edge/<edgeId>/status         edge             JSON EdgeStatus, retained, last will
 *   <base>/<fleet>/edge/<edgeId>/devices        edge             JSON DeviceView[] every 2 s, retained
 *   <base>/<fleet>/edge/<edgeId>/jobs           edge             JSON RolloutJob[], retained
 *   <base>/<fleet>/edge/<edgeId>/request/<op>   -> edge          JSON request (rollout, rollback, jobs, models)
 *   <base>/<fleet>/edge/<edgeId>/response/<op>  edge ->          JSON {status, data, error, id}
 *
 * The per-frame channels of wire v2 (`f`, `a`) have one-letter names: every byte of a
 * topic travels with every frame and every answer.
 *
 * `base` defaults to "splitfleet". Fleet, device and edge ids are 1..64 characters of
 * [A-Za-z0-9_.-], so they never contain MQTT wildcards or separators.
 */

import { createHash } from 'node:crypto';

export const DEFAULT_BASE = 'splitfleet';
export const DEVICE_CHANNELS = [
  'features',
  'result',
  'error',
  'status',
  'config',
  'fetch',
  'chunk',
  'f',
  'ctx',
  'a',
] as const;
export type DeviceChannel = (typeof DEVICE_CHANNELS)[number];

/** Fleet, device and edge ids (also the fleet file's JSON Schema pattern). */
export const ID_PATTERN = '^[A-Za-z0-9_.-]{1,64}$';
const ID_RE = new RegExp(ID_PATTERN);

export function isValidId(id: string): boolean {
  return ID_RE.test(id);
}

function checkId(kind: string, id: string): string {
  if (!isValidId(id)) {
    throw new Error(`invalid ${kind} id ${JSON.stringify(id)}: use 1..64 of [A-Za-z0-9_.-]`);
  }
  return id;
}

/** An id, or `+` in a subscription filter. */
function idOrAny(kind: string, id: string): string {
  return id === '+' ? id : checkId(kind, id);
}

export function deviceTopic(
  fleet: string,
  deviceId: string,
  channel: DeviceChannel,
  base = DEFAULT_BASE,
): string {
  return `${base}/${checkId('fleet', fleet)}/device/${checkId('device', deviceId)}/${channel}`;
}

/** Request/response topics of a device: `.../request/<op>` and `.../response/<op>`
 * (fleet, device and op may be `+` for a subscription filter). */
export function deviceOpTopic(
  fleet: string,
  deviceId: string,
  dir: 'request' | 'response',
  op: string,
  base = DEFAULT_BASE,
): string {
  return `${base}/${idOrAny('fleet', fleet)}/device/${idOrAny('device', deviceId)}/${dir}/${opName(op)}`;
}

const OP_NAME = /^[a-z][a-z0-9-]{0,31}$/;

function opName(op: string): string {
  if (!OP_NAME.test(op) && op !== '+') throw new Error(`invalid op ${JSON.stringify(op)}`);
  return op;
}

export function edgeStatusTopic(fleet: string, edgeId: string, base = DEFAULT_BASE): string {
  return edgeTopic(fleet, edgeId, 'status', base);
}

/** An edge's topics; fleet and edge id may be `+` for a subscription filter. */
export function edgeTopic(
  fleet: string,
  edgeId: string,
  channel: 'status' | 'devices' | 'jobs',
  base = DEFAULT_BASE,
): string {
  return `${base}/${idOrAny('fleet', fleet)}/edge/${idOrAny('edge', edgeId)}/${channel}`;
}

/** Request/response topics of an edge (operator commands such as rollouts). */
export function edgeOpTopic(
  fleet: string,
  edgeId: string,
  dir: 'request' | 'response',
  op: string,
  base = DEFAULT_BASE,
): string {
  return `${edgeTopic(fleet, edgeId, 'status', base).slice(0, -'status'.length)}${dir}/${opName(op)}`;
}

/** Subscription filter for one channel of every device, in one fleet or ('+') all fleets. */
export function deviceFilter(channel: DeviceChannel, fleet = '+', base = DEFAULT_BASE): string {
  return `${base}/${idOrAny('fleet', fleet)}/device/+/${channel}`;
}

export interface DeviceTopic {
  kind: 'device';
  fleet: string;
  deviceId: string;
  channel: DeviceChannel;
}
export interface EdgeTopic {
  kind: 'edge';
  fleet: string;
  edgeId: string;
  channel: 'status';
}

/** Parse a concrete topic; undefined when it is not one of ours. */
export function parseTopic(
  topic: string,
  base = DEFAULT_BASE,
): DeviceTopic | EdgeTopic | undefined {
  const parts = topic.split('/');
  if (parts.length !== 5 || parts[0] !== base) return undefined;
  const [, fleet, kind, id, channel] = parts as [string, string, string, string, string];
  if (!isValidId(fleet) || !isValidId(id)) return undefined;
  if (kind === 'device' && (DEVICE_CHANNELS as readonly string[]).includes(channel)) {
    return { kind: 'device', fleet, deviceId: id, channel: channel as DeviceChannel };
  }
  if (kind === 'edge' && channel === 'status') {
    return { kind: 'edge', fleet, edgeId: id, channel: 'status' };
  }
  return undefined;
}

/** A device's MQTT client id (the broker's ACL checks it, so one device cannot take over
 * another's session). MQTT 3.1.1 client ids are safe up to 23 characters; longer names
 * are hashed, not cut. */
export function deviceClientId(fleet: string, deviceId: string): string {
  const plain = `sf-${fleet}-${deviceId}`;
  return plain.length <= 23
    ? plain
    : `sf-${createHash('sha256').update(`${fleet}/${deviceId}`).digest('hex').slice(0, 20)}`;
}

/**
 * The MQTT client id of a login that is not a device (worker, dashboard, operator):
 * `<user>:<suffix>`, the suffix 1..64 of [A-Za-z0-9_.-] chosen by the client (one per
 * connection it holds at once, e.g. `nodered-1a2b3c4d`). No device's client id holds a
 * `:`, and no user name does, so these never collide with a device's or another login's.
 */
export function loginClientId(user: string, suffix: string): string {
  return `${checkId('user', user)}:${checkId('client id suffix', suffix)}`;
}

/** The login a `<user>:<suffix>` client id belongs to, or undefined for any other id. */
export function clientIdLogin(clientId: string): string | undefined {
  const at = clientId.indexOf(':');
  if (at < 0) return undefined;
  const user = clientId.slice(0, at);
  return isValidId(user) && isValidId(clientId.slice(at + 1)) ? user : undefined;
}

/** Whether every topic the filter `sub` can match is matched by the filter `outer`
 * (a plain topic is a filter that matches itself: publish checks use this too). */
export function filterWithin(sub: string, outer: string): boolean {
  const s = sub.split('/');
  const o = outer.split('/');
  for (let i = 0; i < s.length; i++) {
    if (o[i] === '#') return true;
    if (i >= o.length || s[i] === '#') return false;
    if (o[i] === '+') continue;
    if (s[i] === '+' || s[i] !== o[i]) return false;
  }
  return s.length === o.length;
}

/** A concrete request or response topic of an edge or a device. `op` is the topic's last
 * level as sent: it may not be a valid op name (`validOp` says), and the answer to a
 * request still goes to `respondOn` (the same levels, `response` for `request`), so a
 * sender of a bad request sees the error where it waits. */
export interface OpTopic {
  kind: 'edge' | 'device';
  fleet: string;
  id: string;
  dir: 'request' | 'response';
  op: string;
  validOp: boolean;
  respondOn: string;
}

/** Parse `<base>/<fleet>/<edge|device>/<id>/<request|response>/<op>`; undefined when the
 * topic is not of that shape (fleet and id may be any level: check them before use). */
export function parseOpTopic(topic: string, base = DEFAULT_BASE): OpTopic | undefined {
  const parts = topic.split('/');
  if (parts.length !== 6 || parts[0] !== base) return undefined;
  const [, fleet, kind, id, dir, op] = parts as [string, string, string, string, string, string];
  if ((kind !== 'edge' && kind !== 'device') || (dir !== 'request' && dir !== 'response'))
    return undefined;
  if (!fleet || !id || !op || [fleet, id, op].some((l) => l.includes('+') || l.includes('#')))
    return undefined;
  const respondOn = [base, fleet, kind, id, 'response', op].join('/');
  return { kind, fleet, id, dir, op, validOp: OP_NAME.test(op), respondOn };
}

/**
 * The topic filters a login may publish or subscribe to, by role (the broker's ACL,
 * edge-broker/auth.ts): a device only its own topics; a worker the devices' frames in and
 * answers out; a dashboard reads its fleet (or all); an operator reads and writes it.
 * `fleet` null: every fleet (never for a device).
 */
export function accessFilters(
  role: 'device' | 'worker' | 'dashboard' | 'operator',
  user: string,
  fleet: string | null,
  op: 'publish' | 'subscribe',
  base = DEFAULT_BASE,
): string[] {
  const f = fleet ?? '+';
  const all = fleet ? `${base}/${checkId('fleet', fleet)}/#` : `${base}/#`;
  switch (role) {
    case 'device': {
      const own = (c: DeviceChannel) => deviceTopic(f, user, c, base);
      const ops = (dir: 'request' | 'response') =>
        `${deviceOpTopic(f, user, dir, '+', base).slice(0, -1)}#`;
      return op === 'publish'
        ? [own('features'), own('f'), own('ctx'), own('status'), own('fetch'), ops('response')]
        : [own('result'), own('a'), own('error'), own('config'), own('chunk'), ops('request')];
    }
    case 'worker':
      return op === 'publish'
        ? [deviceFilter('result', f, base), deviceFilter('error', f, base)]
        : [deviceFilter('features', f, base)];
    case 'dashboard':
      return op === 'publish' ? [] : [all];
    case 'operator':
      return [all];
  }
}
