/** What several commands share: the codecs and models a fleet file may name. */
import { codecNames } from '../../core/codec/registry.js';
import { scanZoo } from '../../core/model/zoo.js';
import type { FleetContext } from '../../fleet-config/load.js';

/** The codecs and models a fleet file may name: every pinned codec, and the zoo's
 * backbones by name and name@version. */
export async function fleetContext(): Promise<FleetContext> {
  const { bundles } = await scanZoo();
  return {
    codecs: codecNames(),
    models: bundles
      .map((b) => b.manifest)
      .filter((m) => m.kind === 'backbone')
      .flatMap((m) => [m.name, `${m.name}@${m.version}`]),
  };
}
