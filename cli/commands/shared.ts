/** What several commands share: the codecs, models and bundles a fleet file may name. */
import { codecNames } from '../../core/codec/registry.js';
import { scanZoo } from '../../core/model/zoo.js';
import type { FleetContext } from '../../fleet-config/load.js';
import { loadPlanSources } from '../../fleet-config/plans.js';

export { DEFAULT_FLEET } from '../../fleet-config/schema.js';

/** The names a fleet file may use: every pinned codec, and the zoo's backbones by name
 * and name@version. */
export async function fleetNames(): Promise<Pick<FleetContext, 'codecs' | 'models'>> {
  const { bundles } = await scanZoo();
  return {
    codecs: codecNames(),
    models: bundles
      .map((b) => b.manifest)
      .filter((m) => m.kind === 'backbone')
      .flatMap((m) => [m.name, `${m.name}@${m.version}`]),
  };
}

/** The names a fleet file may use, and the zoo's bundles to check each device's model,
 * codec and point against (a broken bundle is named where no other fits). */
export async function fleetContext(): Promise<FleetContext> {
  const { bundles, broken } = await scanZoo();
  const plans = await loadPlanSources(bundles.map((b) => ({ dir: b.dir })));
  return {
    ...(await fleetNames()),
    plans: { ...plans, broken: [...broken, ...(plans.broken ?? [])] },
  };
}
