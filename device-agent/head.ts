/**
 * The head pipeline the agent runs (pipeline.ts), its one owner: every encode and every
 * swap (a config, a point change, a restart) goes through one queue, so a swap never
 * closes a session mid-encode.
 */
import { selectEngine, type EngineName } from '../core/engine/select.js';
import type { Bundle } from '../core/model/bundle.js';
import { HeadPipeline } from './pipeline.js';

/** What a head is built from. */
export interface HeadSpec {
  bundle: Bundle;
  codec: string;
  point: number;
  engine: EngineName;
}

export class Head {
  private pipeline: HeadPipeline | null = null;
  private lock: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(private readonly threads: number) {}

  /** Load a pipeline for `spec` (not yet in use). */
  async build(spec: HeadSpec): Promise<HeadPipeline> {
    const { engine } = await selectEngine(spec.engine, this.threads); // logs a fallback
    return HeadPipeline.create(spec.bundle, spec.codec, spec.point, {
      threads: this.threads,
      engine,
    });
  }

  /** Load the first pipeline. */
  async start(spec: HeadSpec): Promise<void> {
    this.pipeline = await this.build(spec);
  }

  /** Run `fn` on the pipeline, after every earlier use or swap of it. */
  use<T>(fn: (p: HeadPipeline) => Promise<T>): Promise<T> {
    const run = this.lock.then(() => {
      if (!this.pipeline || this.closed) throw new Error('the head is not running');
      return fn(this.pipeline);
    });
    this.lock = run.catch(() => undefined);
    return run;
  }

  /** Swap in `next` between two encodes, then close the old one (after stop(): close `next`). */
  async swap(next: HeadPipeline): Promise<void> {
    const run = this.lock.then(async () => {
      const old = this.pipeline;
      if (this.closed) return next.close();
      this.pipeline = next;
      await old?.close();
    });
    this.lock = run.catch(() => undefined);
    await run;
  }

  /** Build a pipeline for `spec` and swap it in. */
  async replace(spec: HeadSpec): Promise<void> {
    await this.swap(await this.build(spec));
  }

  /** Close the pipeline once every use queued before has run. */
  async stop(): Promise<void> {
    const run = this.lock.then(async () => {
      if (this.closed) return;
      this.closed = true;
      await this.pipeline?.close();
    });
    this.lock = run.catch(() => undefined);
    await run;
  }
}
