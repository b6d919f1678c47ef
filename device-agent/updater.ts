/**
 * Models over the air, device side: a local store of bundles (device parts only) and a
 * resumable, verified chunked download from the edge's registry (core/wire/ota.ts).
 *
 *   <dir>/<name>-v<version>/            verified bundles, ready to load
 *   <dir>/.staging/<name>-v<version>-<sha12>/<file>.part   a download in progress
 *
 * Each chunk is checked against the sha256 the edge sent with it (a damaged chunk is
 * asked for again), each file against the manifest, the manifest against the sha256 in
 * the config message. Files are appended in order, so a download cut by a lost link or a
 * restart resumes where its `.part` file ends. Only a bundle whose every file verified
 * and which loads is moved into place; anything else is never activated. A download no
 * caller waits for any more (its config was superseded) is abandoned: no more chunks are
 * asked for, and its `.part` files stay for a later resume.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BundleError,
  checkBundleRef,
  deviceRoles,
  loadBundle,
  parseManifestBytes,
  sha256,
  type Bundle,
} from '../core/model/bundle.js';
import {
  bundleRefString,
  decodeChunk,
  DEFAULT_CHUNK_BYTES,
  MAX_BUNDLE_FILE_BYTES,
  OtaError,
  OTA_VERSION,
  type BundleRef,
  type Chunk,
  type FetchRequest,
} from '../core/wire/ota.js';
import { log } from '../core/util/log.js';

export interface UpdaterOptions {
  dir: string;
  /** Bytes asked for per chunk. */
  chunkBytes?: number;
  /** Chunks asked for ahead of the one being written. */
  window?: number;
  /** Tries per chunk (timeouts and damaged chunks). */
  tries?: number;
  timeoutMs?: number;
}

export interface UpdaterStats {
  downloads: number;
  chunks: number;
  bytes: number;
  /** Chunks whose bytes did not match their sha256, asked for again. */
  corruptChunks: number;
  timeouts: number;
  /** Bytes already on disk when a download resumed. */
  resumedBytes: number;
  /** Downloads that failed verification (never activated). */
  rejected: number;
}

interface Waiting {
  resolve: (c: Chunk) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** Downloads bundles over `send` (publishes one fetch request) and answers from `onChunk`. */
export class BundleUpdater {
  readonly stats: UpdaterStats = {
    downloads: 0,
    chunks: 0,
    bytes: 0,
    corruptChunks: 0,
    timeouts: 0,
    resumedBytes: 0,
    rejected: 0,
  };
  private readonly waiting = new Map<string, Waiting>();
  /** One download per bundle at a time; a second get() of it waits for the first. */
  private readonly running = new Map<string, Download>();

  constructor(
    private readonly opts: UpdaterOptions,
    private readonly send: (req: FetchRequest) => Promise<void>,
  ) {}

  /** Feed every message of the device's `chunk` topic here. */
  onChunk(payload: Uint8Array): void {
    let c;
    try {
      c = decodeChunk(payload);
    } catch (e) {
      log.warn({ err: String(e) }, 'unreadable chunk');
      return;
    }
    const w = this.waiting.get(c.id);
    if (!w) {
      if ('error' in c)
        log.warn({ bundle: c.bundle, file: c.file, err: c.error }, 'edge refused a fetch');
      return; // late, duplicate or not ours
    }
    this.waiting.delete(c.id);
    clearTimeout(w.timer);
    if ('error' in c) w.reject(new OtaError(`edge refused ${c.bundle} ${c.file}: ${c.error}`));
    else w.resolve(c);
  }

  /** The verified bundle `ref`, from the store or downloaded into it. A ref that is not
   * the registry's rule (name, version, manifest sha256) is refused before the store is
   * touched. */
  get(untrusted: BundleRef, signal?: AbortSignal): Promise<Bundle> {
    let ref: BundleRef;
    try {
      ref = checkBundleRef(untrusted);
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new BundleError(String(e)));
    }
    if (signal?.aborted) return Promise.reject(abandoned(signal));
    const key = `${bundleRefString(ref)}#${ref.manifestSha256}`;
    let d = this.running.get(key);
    if (!d) {
      const stop = new AbortController();
      const created: Download = {
        bundle: this.getOnce(ref, stop.signal).finally(() => this.running.delete(key)),
        wanted: 0,
        stop,
      };
      created.bundle.catch(() => undefined); // each caller observes its own wait below
      this.running.set(key, created);
      d = created;
    }
    const download = d;
    download.wanted++;
    if (!signal) return download.bundle;
    // this caller may stop waiting; the download goes on while another caller waits
    return new Promise<Bundle>((resolve, reject) => {
      const onAbort = () => {
        reject(abandoned(signal));
        if (--download.wanted === 0) download.stop.abort();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      download.bundle.then(
        (b) => {
          signal.removeEventListener('abort', onAbort);
          resolve(b);
        },
        (e: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(e instanceof Error ? e : new OtaError(String(e)));
        },
      );
    });
  }

  /** Downloads in progress. */
  get downloading(): number {
    return this.running.size;
  }

  /** Stop waiting for chunks (the agent is stopping). */
  close(): void {
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.reject(new OtaError('updater closed'));
    }
    this.waiting.clear();
  }

  private async getOnce(ref: BundleRef, stop: AbortSignal): Promise<Bundle> {
    const name = `${ref.name}-v${ref.version}`;
    const final = inStore(this.opts.dir, name);
    const have = await loadBundle(final, 'device').catch(() => null);
    if (have && have.manifestSha256 === ref.manifestSha256) return have;
    const staging = inStore(
      this.opts.dir,
      '.staging',
      `${name}-${ref.manifestSha256.slice(0, 12)}`,
    );
    await mkdir(staging, { recursive: true });
    const label = bundleRefString(ref);
    log.info({ bundle: label }, 'downloading bundle');
    try {
      const manifestBytes = await this.file(
        label,
        staging,
        'manifest.json',
        ref.manifestSha256,
        stop,
      );
      const m = parseManifestBytes(manifestBytes, `${label} from the edge`);
      if (m.name !== ref.name || m.version !== ref.version) {
        throw new OtaError(`manifest is ${m.name}@${m.version}, expected ${label}`);
      }
      for (const role of deviceRoles(m)) {
        const f = m.files[role]!;
        await this.file(label, staging, f.path, f.sha256, stop);
      }
    } catch (e) {
      if (!stop.aborted) this.stats.rejected++;
      throw e;
    }
    // every file verified: into place, then loaded once (which checks them once more and
    // parses the tables); one that does not load is removed, never activated
    await rm(final, { recursive: true, force: true });
    await rename(staging, final);
    let bundle: Bundle;
    try {
      bundle = await loadBundle(final, 'device');
    } catch (e) {
      this.stats.rejected++;
      await rm(final, { recursive: true, force: true });
      throw e;
    }
    this.stats.downloads++;
    log.info({ bundle: label }, 'bundle verified and stored');
    return bundle;
  }

  /** Download one file into `dir` (resuming its .part), verify it; returns its bytes. A
   * part longer than the file on the edge (a different file) is dropped and fetched anew. */
  private async file(
    bundle: string,
    dir: string,
    file: string,
    want: string,
    stop: AbortSignal,
  ): Promise<Buffer> {
    try {
      return await this.fileOnce(bundle, dir, file, want, stop);
    } catch (e) {
      if (!(e instanceof PartTooLong)) throw e;
      await rm(`${inStore(dir, file)}.part`, { force: true });
      return this.fileOnce(bundle, dir, file, want, stop);
    }
  }

  private async fileOnce(
    bundle: string,
    dir: string,
    file: string,
    want: string,
    stop: AbortSignal,
  ): Promise<Buffer> {
    const done = inStore(dir, file);
    const ready = await readFile(done).catch(() => null);
    if (ready && sha256(ready) === want) return ready;
    const part = `${done}.part`;
    let offset = (await stat(part).catch(() => null))?.size ?? 0;
    this.stats.resumedBytes += offset;
    const size = this.opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    const window = Math.max(1, this.opts.window ?? 4);
    const fh = await open(part, 'a');
    try {
      // the first chunk says how large the file is; then `window` chunks are in flight
      let total = Number.POSITIVE_INFINITY;
      const ahead: { at: number; chunk: Promise<Chunk> }[] = [];
      let next = offset;
      const fill = () => {
        if (stop.aborted) throw abandoned(stop);
        while (ahead.length < window && next < total) {
          const chunk = this.chunk(bundle, file, next, size, stop);
          chunk.catch(() => undefined); // awaited in order below; a later one may fail first
          ahead.push({ at: next, chunk });
          next += size;
          if (total === Number.POSITIVE_INFINITY) break;
        }
      };
      fill();
      while (ahead.length > 0) {
        const { at, chunk } = ahead.shift()!;
        const c = await chunk;
        if (c.total > MAX_BUNDLE_FILE_BYTES)
          throw new OtaError(`${file} is too large (${c.total} B)`);
        if (total === Number.POSITIVE_INFINITY) {
          total = c.total;
          if (offset > total) throw new PartTooLong(`${file}: local part is longer than the file`);
        }
        if (c.offset !== at || c.data.byteLength !== Math.min(size, total - at)) {
          throw new OtaError(`${file}: asked for ${at}, got ${c.offset} (+${c.data.byteLength})`);
        }
        await fh.write(c.data);
        offset += c.data.byteLength;
        fill();
      }
    } finally {
      await fh.close();
    }
    const bytes = await readFile(part);
    const got = sha256(bytes);
    if (got !== want) {
      await rm(part, { force: true });
      throw new OtaError(
        `${bundle} ${file}: sha256 ${got} does not match ${want}; the bundle is not activated`,
      );
    }
    await rename(part, done);
    return bytes;
  }

  /** One chunk, checked against its own sha256; damaged or late chunks are asked again. */
  private async chunk(
    bundle: string,
    file: string,
    offset: number,
    length: number,
    stop: AbortSignal,
  ): Promise<Chunk> {
    const tries = this.opts.tries ?? 5;
    let last: Error = new OtaError('no try');
    for (let i = 0; i < tries; i++) {
      try {
        const c = await this.request(
          { v: OTA_VERSION, id: randomUUID(), bundle, file, offset, length },
          stop,
        );
        if (sha256(c.data) !== c.sha256) {
          this.stats.corruptChunks++;
          last = new OtaError(`${file} chunk at ${offset} failed its sha256`);
          log.warn({ bundle, file, offset, try: i + 1 }, 'damaged chunk, asking again');
          continue;
        }
        this.stats.chunks++;
        this.stats.bytes += c.data.byteLength;
        return c;
      } catch (e) {
        if (!(e instanceof TimeoutError)) throw e;
        this.stats.timeouts++;
        last = e;
      }
    }
    throw new OtaError(
      `${bundle} ${file}: chunk at ${offset} failed ${tries} tries: ${last.message}`,
    );
  }

  /** Ask for one chunk; rejects at the timeout, or at once when the download is abandoned. */
  private request(req: FetchRequest, stop: AbortSignal): Promise<Chunk> {
    return new Promise<Chunk>((resolve, reject) => {
      if (stop.aborted) {
        reject(abandoned(stop));
        return;
      }
      const onStop = () => {
        clearTimeout(timer);
        this.waiting.delete(req.id);
        reject(abandoned(stop));
      };
      const timer = setTimeout(() => {
        stop.removeEventListener('abort', onStop);
        this.waiting.delete(req.id);
        reject(new TimeoutError(`no chunk for ${req.file} at ${req.offset} in time`));
      }, this.opts.timeoutMs ?? 5000);
      stop.addEventListener('abort', onStop, { once: true });
      const settle =
        <T>(fn: (x: T) => void) =>
        (x: T) => {
          stop.removeEventListener('abort', onStop);
          fn(x);
        };
      this.waiting.set(req.id, { resolve: settle(resolve), reject: settle(reject), timer });
      this.send(req).catch((e: Error) => {
        // not sent (link down): the timeout asks again
        log.debug({ err: e.message }, 'fetch request not sent');
      });
    });
  }
}

/** `dir` joined with `segments`, each one plain path segment (no separator, NUL, `.` or
 * `..`, nothing empty): what the store writes stays under its folder. */
function inStore(dir: string, ...segments: string[]): string {
  for (const s of segments) {
    if (!SEGMENT_RE.test(s) || s === '.' || s === '..') {
      throw new OtaError(`refusing the path segment ${JSON.stringify(s.slice(0, 80))}`);
    }
  }
  return join(dir, ...segments);
}
const SEGMENT_RE = /^[A-Za-z0-9_.-]{1,200}$/;

class TimeoutError extends OtaError {}

/** A download and the callers still waiting for it. */
interface Download {
  bundle: Promise<Bundle>;
  wanted: number;
  stop: AbortController;
}

/** The error of a wait or a download given up through `signal`. */
function abandoned(signal: AbortSignal): Error {
  const why: unknown = signal.reason;
  return why instanceof Error ? why : new OtaError('download abandoned');
}
class PartTooLong extends OtaError {}
