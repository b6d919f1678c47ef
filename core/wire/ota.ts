/**
 * Models over the air: the two messages of a chunked bundle download.
 *
 *   <base>/<fleet>/device/<id>/fetch   device -> edge   JSON FetchRequest, QoS 1
 *   <base>/<fleet>/device/<id>/chunk   edge -> device   msgpack Chunk, QoS 1
 *
 * A device asks for one byte range of one file of one bundle; the edge answers with the
 * bytes and their sha256 (so a chunk damaged on the way is caught and asked for again),
 * or with an error the device can show. The chain of trust is the edge's config message:
 * it names the bundle and the sha256 of its manifest.json, the manifest names the sha256
 * of every file, and a bundle is activated only once every file matches.
 */
import { Packr } from 'msgpackr';
import { boundReason } from './messages.js';
import { decodeMsgpack, MsgpackError } from './msgpack.js';

export const OTA_VERSION = 1;
/** Largest chunk an edge sends (well under the broker's payload limit). */
export const MAX_CHUNK_BYTES = 256 * 1024;
export const DEFAULT_CHUNK_BYTES = 64 * 1024;
/** Largest file a bundle may hold (the largest shipped tail is ~6 MB). */
export const MAX_BUNDLE_FILE_BYTES = 512 * 1024 * 1024;

/** `name@version` of a bundle, and the sha256 of its manifest.json. */
/** A bundle as a message names it (the rule of its fields: core/model/ref.ts). */
export type { BundleRef } from '../model/ref.js';

export const bundleRefString = (r: { name: string; version: number }) => `${r.name}@${r.version}`;

export interface FetchRequest {
  v: typeof OTA_VERSION;
  /** Correlation id, echoed in the chunk. */
  id: string;
  /** `name@version`. */
  bundle: string;
  /** `manifest.json` or a file path the manifest lists. */
  file: string;
  offset: number;
  length: number;
}

export interface Chunk {
  v: typeof OTA_VERSION;
  id: string;
  bundle: string;
  file: string;
  offset: number;
  /** Size of the whole file. */
  total: number;
  /** sha256 of `data` (hex). */
  sha256: string;
  data: Uint8Array;
}

export interface ChunkError {
  v: typeof OTA_VERSION;
  id: string;
  bundle: string;
  file: string;
  error: string;
}

/** A refused OTA message or transfer; its reason is at most 1 KiB. */
export class OtaError extends Error {
  override name = 'OtaError';
  constructor(message: string) {
    super(boundReason(message));
  }
}

const packr = new Packr({ useRecords: false, variableMapSize: true });
/** What a chunk's msgpack may hold: one flat map of a few fields. */
const CHUNK_MSGPACK = { maxBytes: MAX_CHUNK_BYTES + 4096, maxDepth: 4, maxItems: 256 };

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const isUint = (v: unknown, max: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
const isText = (v: unknown, max: number): v is string =>
  typeof v === 'string' && v.length > 0 && v.length <= max;
const REF_RE = /^[a-z0-9][a-z0-9.-]{0,63}@[0-9]{1,5}$/;
const FILE_RE = /^[A-Za-z0-9_.-]{1,128}$/;

/** Parse and check a fetch request (JSON); throws OtaError saying what is wrong. */
export function parseFetch(payload: Uint8Array): FetchRequest {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString());
  } catch {
    throw new OtaError('fetch request is not JSON');
  }
  if (!isObj(v) || v.v !== OTA_VERSION) throw new OtaError(`fetch request is not v${OTA_VERSION}`);
  if (!isText(v.id, 64)) throw new OtaError('fetch request needs an id (1..64 characters)');
  if (!isText(v.bundle, 80) || !REF_RE.test(v.bundle))
    throw new OtaError('fetch request needs bundle "name@version"');
  if (!isText(v.file, 128) || !FILE_RE.test(v.file))
    throw new OtaError('fetch request needs a file name');
  if (!isUint(v.offset, MAX_BUNDLE_FILE_BYTES)) throw new OtaError('bad offset');
  if (!isUint(v.length, MAX_CHUNK_BYTES) || v.length === 0)
    throw new OtaError(`length must be 1..${MAX_CHUNK_BYTES}`);
  return {
    v: OTA_VERSION,
    id: v.id,
    bundle: v.bundle,
    file: v.file,
    offset: v.offset,
    length: v.length,
  };
}

export function encodeChunk(c: Chunk | ChunkError): Buffer {
  return packr.pack(c);
}

/** Decode a chunk message; throws OtaError on anything that is not a v1 chunk. */
export function decodeChunk(payload: Uint8Array): Chunk | ChunkError {
  let v: unknown;
  try {
    v = decodeMsgpack(payload, CHUNK_MSGPACK);
  } catch (e) {
    if (!(e instanceof MsgpackError)) throw e;
    throw new OtaError(`chunk is not msgpack: ${e.message}`);
  }
  if (
    !isObj(v) ||
    v.v !== OTA_VERSION ||
    !isText(v.id, 64) ||
    !isText(v.bundle, 80) ||
    !isText(v.file, 128)
  ) {
    throw new OtaError(`not a v${OTA_VERSION} chunk`);
  }
  const head = { v: OTA_VERSION, id: v.id, bundle: v.bundle, file: v.file } as const;
  if (typeof v.error === 'string') return { ...head, error: boundReason(v.error) };
  if (
    !isUint(v.offset, MAX_BUNDLE_FILE_BYTES) ||
    !isUint(v.total, MAX_BUNDLE_FILE_BYTES) ||
    !isText(v.sha256, 128) ||
    !(v.data instanceof Uint8Array) ||
    v.data.byteLength > MAX_CHUNK_BYTES
  ) {
    throw new OtaError('chunk fields are missing or out of range');
  }
  return { ...head, offset: v.offset, total: v.total, sha256: v.sha256, data: v.data };
}
