import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadBundle, sha256, type Bundle } from '../../core/model/load.js';
import type { Aedes, AedesPublishPacket } from 'aedes';

/**
 * A copy of `src` as another version in `dir` (a registry folder), the way a new
 * release of a model looks: same files, a manifest with the new version. `brokenTail`
 * gives it a tail that cannot read the head's tensor (the head network in its place,
 * re-hashed, so the bundle verifies and loads but every frame fails at the edge).
 */
export async function bundleVersion(
  src: Bundle,
  dir: string,
  version: number,
  opts: { brokenTail?: boolean } = {},
): Promise<Bundle> {
  const out = join(dir, `${src.manifest.name}-v${version}`);
  await cp(src.dir, out, { recursive: true });
  const m = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as {
    version: number;
    files: Record<string, { path: string; sha256: string }>;
  };
  m.version = version;
  if (opts.brokenTail) {
    const head = await readFile(join(out, m.files.head!.path));
    const path = `tail-broken-${sha256(head).slice(0, 8)}.onnx`;
    await writeFile(join(out, path), head);
    m.files.tail = { ...m.files.tail!, path, sha256: sha256(head) };
  }
  await writeFile(join(out, 'manifest.json'), JSON.stringify(m, null, 1));
  return loadBundle(out);
}

/** Let a test see (and change or drop) every packet the broker forwards to a client:
 * `fn` returns the packet to deliver, a changed copy, or null to drop it. */
export function interceptForward(
  aedes: Aedes,
  fn: (clientId: string, packet: AedesPublishPacket) => AedesPublishPacket | null,
): void {
  const orig = aedes.authorizeForward.bind(aedes);
  aedes.authorizeForward = (client, packet) => {
    const p = orig(client, packet);
    return p ? fn(client.id, p) : p;
  };
}
