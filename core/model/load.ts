/**
 * Loading a bundle folder: manifest.json and the files it lists, each named with its
 * hash and checked against the sha256 in the manifest before it is used. A learned
 * codec's bundle builds its codec here from its manifest and tables files.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { learnedCodec, parseTables } from '../codec/learned.js';
import type { CdfTable } from '../codec/rans.js';
import type { FeatureCodec } from '../codec/types.js';
import {
  BundleError,
  decoderRoles,
  deviceRoles,
  parseManifestBytes,
  type Manifest,
} from './manifest.js';

/** Which files of a bundle a process loads: all (the edge), the device's part (head
 * networks, codec tables), or the part a decoder process runs (its tails and entropy
 * tables). */
export type BundlePart = 'all' | 'device' | 'decoder';

export interface Bundle {
  dir: string;
  manifest: Manifest;
  /** sha256 of manifest.json: the bundle's identity in config messages and downloads. */
  manifestSha256: string;
  /** Which files were verified and can be used: all of them, or the device's part. */
  part: BundlePart;
  /** Absolute path of a listed file, after its hash was verified. */
  file(role: string): string;
  /** The bundle's own codec (kind "codec"): its tables and operating points; else null. */
  codec: FeatureCodec | null;
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Load a bundle folder: validate the manifest and verify the sha256 of every file of
 * `part` (a device holds only its part; the edge holds all; a decoder process loads and
 * verifies only the files it runs). */
export async function loadBundle(dir: string, part: BundlePart = 'all'): Promise<Bundle> {
  const abs = resolve(dir);
  let manifestBytes: Buffer;
  try {
    manifestBytes = await readFile(join(abs, 'manifest.json'));
  } catch (e) {
    throw new BundleError(`cannot read ${join(abs, 'manifest.json')}: ${(e as Error).message}`);
  }
  const m = parseManifestBytes(manifestBytes, abs);
  const roles = new Set(
    part === 'all' ? Object.keys(m.files) : part === 'device' ? deviceRoles(m) : decoderRoles(m),
  );
  const contents = new Map<string, Buffer>();
  for (const [role, f] of Object.entries(m.files)) {
    if (!roles.has(role)) continue;
    const bytes = await readFile(join(abs, f.path)).catch((e: Error) => {
      throw new BundleError(`bundle ${m.name}: missing ${role} file ${f.path}: ${e.message}`);
    });
    const got = sha256(bytes);
    if (got !== f.sha256) {
      throw new BundleError(
        `bundle ${m.name}: ${f.path} has sha256 ${got}, manifest says ${f.sha256}`,
      );
    }
    if (f.path.endsWith('.json')) contents.set(role, bytes);
  }
  let codec: FeatureCodec | null = null;
  if (m.kind === 'codec') {
    const tables = new Map<string, CdfTable[]>();
    for (const p of m.codec.points) {
      if (p.entropy === null || tables.has(p.entropy)) continue;
      try {
        tables.set(p.entropy, parseTables(contents.get(p.entropy)!.toString('utf8')));
      } catch (e) {
        throw new BundleError(
          `bundle ${m.name}: ${m.files[p.entropy]!.path}: ${(e as Error).message}`,
        );
      }
    }
    codec = learnedCodec(m.codec, tables);
  }
  return {
    dir: abs,
    manifest: m,
    manifestSha256: sha256(manifestBytes),
    part,
    file: (role) => {
      const f = m.files[role];
      if (!f) throw new BundleError(`bundle ${m.name} has no file ${role}`);
      if (!roles.has(role))
        throw new BundleError(`bundle ${m.name}: ${role} is not in its ${part} part`);
      return join(abs, f.path);
    },
    codec,
  };
}
