/**
 * The edge's model registry: the bundles it decodes are the bundles it serves to devices
 * over the air. A device fetches the device part of a bundle (manifest.json, head
 * networks, codec tables; never the edge's tail) in chunks on `.../fetch` -> `.../chunk`
 * (core/wire/ota.ts). Files are read from disk per chunk, so a file damaged after
 * the edge started is caught by the device's sha256 check, never activated.
 */
import type { AedesPublishPacket } from 'aedes';
import { subscribe, type EdgeBroker } from '../broker.js';
import type { Part } from '../bus.js';
import { fromThisNode } from '../cluster.js';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256, type Bundle } from '../../core/model/load.js';
import { checkBundleRef, deviceRoles } from '../../core/model/manifest.js';
import { pickBundle } from '../../core/model/zoo.js';
import {
  bundleRefString,
  encodeChunk,
  OtaError,
  OTA_VERSION,
  parseFetch,
  type BundleRef,
  type Chunk,
  type ChunkError,
  type FetchRequest,
} from '../../core/wire/ota.js';
import { deviceFilter, deviceTopic, parseTopic } from '../../core/wire/topics.js';
import { effectiveConfig } from '../../fleet-config/effective.js';
import type { PlanBundleDir, PlanSources } from '../../fleet-config/plans.js';
import type { DeviceSettings, FleetFile } from '../../fleet-config/schema.js';
import { background, limitedLog } from '../../core/util/log.js';

export interface RegistryEntry {
  ref: string;
  bundle: Bundle;
  /** Staged: served only where named with its version (a rollout, or `name@version` in
   * the fleet file), never as the newest version of a plain `name`. */
  staged: boolean;
  /** Served file name -> absolute path: manifest.json and the device part. */
  files: Map<string, string>;
}

export interface RegistryListing {
  ref: string;
  kind: string;
  staged: boolean;
  manifestSha256: string;
  files: string[];
}

export class ModelRegistry {
  private readonly entries = new Map<string, RegistryEntry>();

  constructor(bundles: readonly Bundle[], staged: readonly Bundle[] = []) {
    for (const b of [...bundles, ...staged]) {
      const m = b.manifest;
      // served by name to devices, which store it under that name: the same rule both ends
      checkBundleRef({ name: m.name, version: m.version, manifestSha256: b.manifestSha256 });
      const files = new Map([['manifest.json', join(b.dir, 'manifest.json')]]);
      for (const role of deviceRoles(m)) files.set(m.files[role]!.path, b.file(role));
      const ref = bundleRefString(m);
      this.entries.set(ref, { ref, bundle: b, files, staged: !bundles.includes(b) });
    }
  }

  list(): RegistryListing[] {
    return [...this.entries.values()].map((e) => ({
      ref: e.ref,
      kind: e.bundle.manifest.kind,
      staged: e.staged,
      manifestSha256: e.bundle.manifestSha256,
      files: [...e.files.keys()],
    }));
  }

  /** The bundles a fleet file's plans are checked against (fleet-config/plans.ts). */
  planSources(): PlanSources {
    return {
      bundles: [...this.entries.values()].map((e) => ({
        manifest: e.bundle.manifest,
        codec: e.bundle.codec,
        staged: e.staged,
      })),
      where: 'this edge (it serves the models of --model and of its fleet file at start)',
    };
  }

  /** The bundle folders, for a check on another thread (fleet-config/load-worker.ts). */
  planDirs(): PlanBundleDir[] {
    return [...this.entries.values()].map((e) => ({ dir: e.bundle.dir, staged: e.staged }));
  }

  get(ref: string): RegistryEntry | undefined {
    return this.entries.get(ref);
  }

  /** The bundle a device with these settings runs (the agent's own rule; a staged
   * bundle only when named with its version), or null. */
  resolve(model: string, codec: string): BundleRef | null {
    // the zoo's one rule (staged bundles only when named with their version)
    const hit = pickBundle(
      [...this.entries.values()].map((e) => ({ manifest: e.bundle.manifest, staged: e.staged, e })),
      model,
      codec,
    );
    return hit
      ? {
          name: hit.manifest.name,
          version: hit.manifest.version,
          manifestSha256: hit.e.bundle.manifestSha256,
        }
      : null;
  }

  /** Read the requested range; throws OtaError for an unknown bundle, file or range. */
  async read(req: FetchRequest): Promise<Chunk> {
    const e = this.entries.get(req.bundle);
    if (!e) {
      throw new OtaError(
        `bundle ${req.bundle} is not in this edge's registry (has ${[...this.entries.keys()].join(', ')})`,
      );
    }
    const path = e.files.get(req.file);
    if (!path) throw new OtaError(`bundle ${req.bundle} serves no file ${req.file}`);
    const fh = await open(path, 'r');
    try {
      const total = (await fh.stat()).size;
      // past the end: no bytes, and the size, so the device can see its part is too long
      const data = Buffer.alloc(Math.max(0, Math.min(req.length, total - req.offset)));
      const { bytesRead } = await fh.read(data, 0, data.length, req.offset);
      const got = data.subarray(0, bytesRead);
      return {
        v: OTA_VERSION,
        id: req.id,
        bundle: req.bundle,
        file: req.file,
        offset: req.offset,
        total,
        sha256: sha256(got),
        data: got,
      };
    } finally {
      await fh.close();
    }
  }
}

export interface OtaStats {
  chunks: number;
  bytes: number;
  refused: number;
}

/** Chunk reads in flight per device; more are refused (a device asks four ahead). */
const MAX_READS_PER_DEVICE = 16;

/** Whether a device may fetch a staged bundle (`name@version`): the edge says yes for
 * the devices whose config names it, by a rollout's pin or by the fleet file. */
export type StagedAccess = (fleet: string, device: string, ref: string) => boolean;

/** The edge's rule for staged bundles: a device may fetch one only when the config the
 * edge wants it to run names it, by a rollout's pin (`pin`, the rollout manager's
 * overrideFor) or by a `name@version` in the fleet file in force. */
export function namedInConfig(
  fleetFile: () => FleetFile | null,
  registry: ModelRegistry,
  pin: (device: string) => Partial<DeviceSettings> | undefined,
): StagedAccess {
  return (fleet, device, ref) => {
    const f = fleetFile();
    if (!f || f.fleet !== fleet || !Object.hasOwn(f.devices, device)) return false;
    const s = effectiveConfig(f, device, pin(device));
    const named = registry.resolve(s.model, s.codec);
    return named !== null && bundleRefString(named) === ref;
  };
}

export interface ServeOptions {
  fleet: string;
  base: string;
  /** Released bundles go to any device; a staged one only where this says so (absent:
   * to no device). */
  mayFetchStaged?: StagedAccess;
}

/** Answer every device's fetch requests from `registry`; returns the stats and a stop. */
export async function serveRegistry(
  broker: EdgeBroker,
  registry: ModelRegistry,
  opts: ServeOptions,
  stats: OtaStats = { chunks: 0, bytes: 0, refused: 0 },
): Promise<{ stats: OtaStats; stop: () => Promise<void> }> {
  const allowed = (fleet: string, device: string, ref: string): boolean => {
    try {
      return opts.mayFetchStaged?.(fleet, device, ref) ?? false;
    } catch (e) {
      limitedLog.warn(
        `ota-staged-check:${fleet}/${device}`,
        { device, bundle: ref, err: String(e) },
        'staged bundle check failed; refused',
      );
      return false;
    }
  };
  const reading = new Map<string, number>();
  const reply = (topic: string, body: Chunk | ChunkError) =>
    broker.publish(topic, encodeChunk(body));
  /** The refusal of a request, as the device reads it. */
  const refusal = (req: Pick<FetchRequest, 'id' | 'bundle' | 'file'>, error: string) =>
    ({
      v: OTA_VERSION,
      id: req.id,
      bundle: req.bundle,
      file: req.file,
      error,
    }) satisfies ChunkError;
  const onFetch = (packet: AedesPublishPacket, payload: Buffer) => {
    if (!fromThisNode(broker.aedes, packet)) return; // a cluster: the device's node answers
    const t = parseTopic(packet.topic, opts.base);
    if (!t || t.kind !== 'device') return;
    const to = deviceTopic(t.fleet, t.deviceId, 'chunk', opts.base);
    let req: FetchRequest;
    try {
      req = parseFetch(payload);
    } catch (e) {
      stats.refused++;
      // a request without a usable id still gets an answer the device can log
      background(reply(to, refusal({ id: '-', bundle: '-', file: '-' }, String(e))), 'ota reply');
      return;
    }
    const entry = registry.get(req.bundle);
    if (entry?.staged && !allowed(t.fleet, t.deviceId, req.bundle)) {
      stats.refused++;
      limitedLog.warn(
        `ota-staged:${t.fleet}/${t.deviceId}`,
        { device: t.deviceId, bundle: req.bundle },
        'fetch of a staged bundle refused',
      );
      const why = `bundle ${req.bundle} is staged and not named for this device (no rollout or pin gives it to ${t.deviceId})`;
      background(reply(to, refusal(req, why)), 'ota reply');
      return;
    }
    const who = `${t.fleet}/${t.deviceId}`;
    const busy = reading.get(who) ?? 0;
    if (busy >= MAX_READS_PER_DEVICE) {
      stats.refused++;
      const why = `more than ${MAX_READS_PER_DEVICE} fetches in flight; ask again later`;
      background(reply(to, refusal(req, why)), 'ota reply');
      return;
    }
    reading.set(who, busy + 1);
    const done = () => {
      const n = (reading.get(who) ?? 1) - 1;
      if (n > 0) reading.set(who, n);
      else reading.delete(who);
    };
    const served = registry
      .read(req)
      .finally(done)
      .then(
        (chunk) => {
          stats.chunks++;
          stats.bytes += chunk.data.byteLength;
          return reply(to, chunk);
        },
        (e: unknown) => {
          stats.refused++;
          limitedLog.warn(
            `ota-refused:${who}`,
            { device: t.deviceId, bundle: req.bundle, file: req.file, err: String(e) },
            'fetch refused',
          );
          return reply(to, refusal(req, e instanceof Error ? e.message : String(e)));
        },
      );
    background(served, 'ota reply');
  };
  const stop = await subscribe(broker, deviceFilter('fetch', opts.fleet, opts.base), onFetch);
  return { stats, stop };
}

/** The registry served over the air, as a part of the edge. */
export class OtaService implements Part {
  readonly name = 'ota';
  readonly stats: OtaStats = { chunks: 0, bytes: 0, refused: 0 };
  private end: (() => Promise<void>) | null = null;

  constructor(
    private readonly broker: EdgeBroker,
    private readonly registry: ModelRegistry,
    private readonly opts: ServeOptions,
  ) {}

  async start(): Promise<void> {
    const served = await serveRegistry(this.broker, this.registry, this.opts, this.stats);
    this.end = served.stop;
  }

  async stop(): Promise<void> {
    await this.end?.();
    this.end = null;
  }
}
