/**
 * Feature frames: what a device publishes on `.../features`.
 *
 * Wire format v1 is a msgpack array of ten positional fields (names cost bytes; with a
 * 60-byte payload every header byte is ~1.7% overhead):
 *
 *   [version, frameId, modelId, modelVersion, codecId, codecVersion, point, shape, ts32, payload, tag?]
 *
 * - version       1 (FRAME_VERSION); anything else is refused
 * - frameId       uint32, chosen by the device, unique per device among frames in flight
 * - modelId       pinned numeric model id from the bundle manifest (uint16)
 * - modelVersion  uint16
 * - codecId       pinned numeric codec id from core/codec/registry (uint8)
 * - codecVersion  uint8, the codec's bitstream version
 * - point         uint8, the codec's operating point index
 * - shape         array of 1..6 positive integers, the tensor shape without the batch axis
 * - ts32          low 32 bits of the capture time in Unix milliseconds; receivers unwrap
 *                 it against their own clock (see unwrapTs32), which is exact while the
 *                 clocks are within 24 days of each other
 * - payload       msgpack bin: the codec's bytes
 * - tag           optional (an 11th field only when present): the source's name for the
 *                 image, 1..128 printable characters (e.g. the sample file, so a dashboard
 *                 can show it). Agents add it only when asked (`--tag-frames`): it costs
 *                 its length in bytes, and receivers older than this field refuse it.
 *
 * The device id is not in the frame: it is the topic's device segment.
 * With small ids and a payload under 256 bytes the header is 22-23 bytes. Wire format v2
 * (frame-v2.ts), for steady streams, says model, codec, point and shape once per session.
 */
import { Packr } from 'msgpackr';
import { boundReason } from './messages.js';
import { decodeMsgpack, describeValue, MsgpackError } from './msgpack.js';

export const FRAME_VERSION = 1;
/** Largest payload a frame may carry (bytes). Learned codecs use < 100 B, fp32 64 KiB. */
export const MAX_PAYLOAD_BYTES = 1 << 20;
/** Largest encoded frame accepted from the wire. */
export const MAX_FRAME_BYTES = MAX_PAYLOAD_BYTES + 256;
const MAX_DIMS = 6;
const MAX_ELEMENTS = 1 << 22;
/** What a frame's msgpack may hold: v1 needs depth 2 and 17 elements. */
const FRAME_MSGPACK = { maxDepth: 8, maxItems: 1024 };
/** Header room a frame may take around its payload. */
const HEADER_ROOM = MAX_FRAME_BYTES - MAX_PAYLOAD_BYTES;

export interface Frame {
  frameId: number;
  modelId: number;
  modelVersion: number;
  codecId: number;
  codecVersion: number;
  point: number;
  shape: number[];
  /** Capture time, Unix milliseconds (full precision on the sender side). */
  captureTs: number;
  payload: Uint8Array;
  /** The source's name for the image (optional). */
  tag?: string;
}

const TAG_RE = /^[\x20-\x7e]{1,128}$/;

export class FrameError extends Error {
  override name = 'FrameError';
  constructor(
    message: string,
    /** Frame id when it could be read before the error, else undefined. */
    readonly frameId?: number,
  ) {
    super(boundReason(message));
  }
}

// `useRecords: false` keeps plain msgpack (no msgpackr record extension), so any
// msgpack implementation can read frames. Frames are read by decodeMsgpack (msgpack.ts),
// which accepts no extension at all.
const packr = new Packr({ useRecords: false, variableMapSize: true });

function isUint(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
}

/** Low 32 bits of a Unix-millisecond time. */
export function ts32(ms: number): number {
  return Math.floor(ms) % 0x1_0000_0000;
}

/** The full time nearest to `nearMs` whose low bits (a counter wrapping at `span`) are
 * `low`: a capture time sent in 32 bits (v1) or 16 bits (v2). */
export function unwrapTime(low: number, nearMs: number, span: number): number {
  const base = nearMs - (nearMs % span);
  let best = base + low;
  for (const c of [best - span, best + span]) {
    if (Math.abs(c - nearMs) < Math.abs(best - nearMs)) best = c;
  }
  return best;
}

/** The full time nearest to `nowMs` whose low 32 bits are `low`. */
export const unwrapTs32 = (low: number, nowMs: number): number =>
  unwrapTime(low, nowMs, 0x1_0000_0000);

/** `, got <a short description of v>` for an error reason (never the value itself). */
const got = (v: unknown) => `, got ${describeValue(v)}`;

function checkShape(shape: unknown, frameId?: number): number[] {
  if (!Array.isArray(shape) || shape.length < 1 || shape.length > MAX_DIMS) {
    throw new FrameError(
      `shape must be an array of 1..${MAX_DIMS} dimensions${got(shape)}`,
      frameId,
    );
  }
  let n = 1;
  for (const d of shape) {
    if (!isUint(d, MAX_ELEMENTS) || d === 0) {
      throw new FrameError(`shape dimensions must be positive integers${got(d)}`, frameId);
    }
    n *= d;
  }
  if (n > MAX_ELEMENTS) throw new FrameError(`tensor of ${n} elements exceeds the cap`, frameId);
  return shape as number[];
}

/** Encode a frame; throws FrameError on a field out of range (a sender bug). */
export function encodeFrame(f: Frame): Uint8Array {
  validateFields(f);
  if (f.payload.byteLength > MAX_PAYLOAD_BYTES) {
    throw new FrameError(`payload of ${f.payload.byteLength} B exceeds ${MAX_PAYLOAD_BYTES} B`);
  }
  // A Uint8Array packs as msgpack bin; a Buffer view of a larger pool would too, but
  // copy-free views must keep their offset, so pass a plain Uint8Array.
  const payload =
    f.payload instanceof Buffer
      ? new Uint8Array(f.payload.buffer, f.payload.byteOffset, f.payload.byteLength)
      : f.payload;
  return packr.pack([
    FRAME_VERSION,
    f.frameId,
    f.modelId,
    f.modelVersion,
    f.codecId,
    f.codecVersion,
    f.point,
    f.shape,
    ts32(f.captureTs),
    payload,
    ...(f.tag !== undefined ? [f.tag] : []),
  ]);
}

/** Check the fields of a frame (a FrameError names the first one out of range). */
export function validateFields(
  f: Omit<Frame, 'payload' | 'captureTs'> & { captureTs: number },
): void {
  if (!isUint(f.frameId, 0xffff_ffff)) {
    throw new FrameError(`frameId must be a uint32${got(f.frameId)}`);
  }
  const id = f.frameId;
  const uints = [
    ['modelId', f.modelId, 0xffff, 'uint16'],
    ['modelVersion', f.modelVersion, 0xffff, 'uint16'],
    ['codecId', f.codecId, 0xff, 'uint8'],
    ['codecVersion', f.codecVersion, 0xff, 'uint8'],
    ['point', f.point, 0xff, 'uint8'],
  ] as const;
  for (const [name, v, max, type] of uints) {
    if (!isUint(v, max)) throw new FrameError(`${name} must be a ${type}${got(v)}`, id);
  }
  if (!Number.isFinite(f.captureTs) || f.captureTs < 0) {
    throw new FrameError(`captureTs must be a non-negative time${got(f.captureTs)}`, id);
  }
  checkShape(f.shape, id);
  if (f.tag !== undefined && !(typeof f.tag === 'string' && TAG_RE.test(f.tag))) {
    throw new FrameError(`tag must be 1..128 printable ASCII characters${got(f.tag)}`, id);
  }
}

/**
 * Decode and validate a v1 frame from the wire. `bytes` may be a view into a larger
 * buffer (mqtt.js hands out Buffer views); only its own window is read.
 * @param nowMs receiver clock used to unwrap the 32-bit capture time
 * @param maxPayloadBytes the receiver's payload cap (the frame may be 256 B more)
 */
export function decodeFrame(
  bytes: Uint8Array,
  nowMs: number = Date.now(),
  maxPayloadBytes: number = MAX_PAYLOAD_BYTES,
): Frame {
  const maxFrame = maxPayloadBytes + HEADER_ROOM;
  if (bytes.byteLength === 0) throw new FrameError('empty frame');
  if (bytes.byteLength > maxFrame) {
    throw new FrameError(`frame of ${bytes.byteLength} B exceeds ${maxFrame} B`);
  }
  let raw: unknown;
  try {
    raw = decodeMsgpack(bytes, { ...FRAME_MSGPACK, maxBytes: maxFrame });
  } catch (e) {
    if (!(e instanceof MsgpackError)) throw e;
    throw new FrameError(`not a msgpack frame: ${e.message}`);
  }
  if (!Array.isArray(raw)) throw new FrameError(`frame must be a msgpack array${got(raw)}`);
  const [version, frameId] = raw as unknown[];
  const id = isUint(frameId, 0xffff_ffff) ? frameId : undefined;
  if (version !== FRAME_VERSION) {
    const shown = typeof version === 'number' ? String(version) : describeValue(version);
    throw new FrameError(`unsupported frame version ${shown} (want ${FRAME_VERSION})`, id);
  }
  if (raw.length !== 10 && raw.length !== 11) {
    throw new FrameError(`v1 frame has 10 fields (11 with a tag), got ${raw.length}`, id);
  }
  const [, , modelId, modelVersion, codecId, codecVersion, point, shape, t, payload, tag] = raw as [
    unknown,
    unknown,
    number,
    number,
    number,
    number,
    number,
    unknown,
    unknown,
    unknown,
    unknown,
  ];
  if (id === undefined) throw new FrameError(`frameId must be a uint32${got(frameId)}`);
  if (!isUint(t, 0xffff_ffff)) throw new FrameError(`ts32 must be a uint32${got(t)}`, id);
  if (!(payload instanceof Uint8Array)) {
    throw new FrameError(`payload must be msgpack bin${got(payload)}`, id);
  }
  if (payload.byteLength > maxPayloadBytes) {
    throw new FrameError(`payload exceeds ${maxPayloadBytes} B`, id);
  }
  const f: Frame = {
    frameId: id,
    modelId,
    modelVersion,
    codecId,
    codecVersion,
    point,
    shape: shape as number[],
    captureTs: unwrapTs32(t, nowMs),
    payload,
    ...(raw.length === 11 ? { tag: tag as string } : {}),
  };
  validateFields(f);
  return f;
}

/** Bytes a v1 header adds around a payload of `payloadBytes` with these fields. */
export function frameOverhead(f: Frame): number {
  return encodeFrame(f).byteLength - f.payload.byteLength;
}
