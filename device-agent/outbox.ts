/**
 * The device's persistent outbox: every frame the agent accepts is written here before
 * it is published, and removed when the edge has answered it (result or error). Frames
 * still here when the agent stops (broker unreachable, power cut) are sent, in their
 * capture order, when it starts again.
 *
 * One file per frame, `<seq>-<frameId>.frame` (seq: 12 digits, the order), written to a
 * temporary name and renamed, so a crash leaves either the whole frame or nothing:
 *   [u32 LE header length][JSON header {v: 2, frameId, capturedAt}][frame bytes]
 * Files of version 1 (no `v`; a `label` field, ignored) are still read and sent.
 * Bounded by frames and bytes. Declared drop policy: **drop-oldest** — when a new frame
 * does not fit, the oldest frames not yet sent on the current connection are dropped,
 * each one counted and logged; frames in flight are never dropped.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface OutboxOptions {
  dir: string;
  /** At most this many frames (default 1000). */
  maxFrames?: number;
  /** At most this many bytes of frames (default 64 MiB). */
  maxBytes?: number;
}

export interface OutboxEntry {
  frameId: number;
  capturedAt: number;
  frame: Buffer;
}

/** The header's version; version 1 had no `v` field. */
const OUTBOX_VERSION = 2;

/** The header of a file, or undefined when it is not one of ours. */
function parseHeader(text: string): { frameId: number; capturedAt: number } | undefined {
  const h: unknown = JSON.parse(text);
  if (typeof h !== 'object' || h === null) return undefined;
  const { v, frameId, capturedAt } = h as Record<string, unknown>;
  if (v !== undefined && v !== 1 && v !== OUTBOX_VERSION) return undefined;
  if (typeof frameId !== 'number' || !Number.isInteger(frameId) || frameId < 0) return undefined;
  if (frameId > 0xffff_ffff || typeof capturedAt !== 'number') return undefined;
  return { frameId, capturedAt };
}

interface Meta {
  seq: number;
  file: string;
  bytes: number;
}

const NAME = /^(\d{12})-(\d{1,10})\.frame$/;

export class Outbox {
  private readonly meta = new Map<number, Meta>();
  private seq = 0;
  private bytes = 0;
  readonly maxFrames: number;
  readonly maxBytes: number;

  private constructor(readonly opts: OutboxOptions) {
    this.maxFrames = opts.maxFrames ?? 1000;
    this.maxBytes = opts.maxBytes ?? 64 * 1024 * 1024;
  }

  /** Open (or create) the outbox; returns it with the frames left from earlier runs, oldest first. */
  static async open(opts: OutboxOptions): Promise<{ outbox: Outbox; restored: OutboxEntry[] }> {
    const o = new Outbox(opts);
    await mkdir(opts.dir, { recursive: true });
    const names = (await readdir(opts.dir)).filter((n) => NAME.test(n)).sort();
    const restored: OutboxEntry[] = [];
    for (const name of names) {
      const [, seq] = NAME.exec(name)!;
      try {
        const buf = await readFile(join(opts.dir, name));
        const hl = buf.readUInt32LE(0);
        const h = parseHeader(buf.subarray(4, 4 + hl).toString('utf8'));
        if (!h) throw new Error('not an outbox file');
        const frame = Buffer.from(buf.subarray(4 + hl));
        restored.push({ ...h, frame });
        o.meta.set(h.frameId, { seq: Number(seq), file: name, bytes: frame.length });
        o.bytes += frame.length;
        o.seq = Math.max(o.seq, Number(seq) + 1);
      } catch {
        // a torn or foreign file: not ours to send
        await rm(join(opts.dir, name), { force: true });
      }
    }
    return { outbox: o, restored };
  }

  get size(): number {
    return this.meta.size;
  }

  get totalBytes(): number {
    return this.bytes;
  }

  /** Whether one more frame of `bytes` fits without dropping. */
  fits(bytes: number): boolean {
    return this.meta.size + 1 <= this.maxFrames && this.bytes + bytes <= this.maxBytes;
  }

  async put(e: OutboxEntry): Promise<void> {
    const seq = this.seq++;
    const name = `${String(seq).padStart(12, '0')}-${e.frameId}.frame`;
    const header = Buffer.from(
      JSON.stringify({ v: OUTBOX_VERSION, frameId: e.frameId, capturedAt: e.capturedAt }),
    );
    const len = Buffer.alloc(4);
    len.writeUInt32LE(header.length, 0);
    const tmp = join(this.opts.dir, `.${name}.tmp`);
    await writeFile(tmp, Buffer.concat([len, header, e.frame]));
    await rename(tmp, join(this.opts.dir, name));
    this.meta.set(e.frameId, { seq, file: name, bytes: e.frame.length });
    this.bytes += e.frame.length;
  }

  async remove(frameId: number): Promise<void> {
    const m = this.meta.get(frameId);
    if (!m) return;
    this.meta.delete(frameId);
    this.bytes -= m.bytes;
    await rm(join(this.opts.dir, m.file), { force: true });
  }
}
