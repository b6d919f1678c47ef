/**
 * A device's effective settings: the fleet defaults (with the schema's defaults under
 * them) <- its group <- its own overrides, and a short content hash that names this
 * config: the edge publishes it retained, the agent acknowledges the hash it applied.
 */
import { createHash } from 'node:crypto';
import { defaultSettings, SETTING_KEYS, type DeviceSettings, type FleetFile } from './schema.js';

export interface EffectiveConfig extends DeviceSettings {
  fleet: string;
  device: string;
  group: string | null;
  /** sha256 (first 16 hex digits) of the canonical JSON of everything above. */
  configId: string;
}

/** `pin`: settings that win over the file's (a rollout job's model, rollout.ts). */
export function effectiveConfig(
  fleet: FleetFile,
  device: string,
  pin?: Partial<DeviceSettings>,
): EffectiveConfig {
  const own = fleet.devices[device];
  if (!own) throw new Error(`device ${JSON.stringify(device)} is not in fleet ${fleet.fleet}`);
  const group = own.group ?? null;
  const layers = [
    defaultSettings(),
    fleet.defaults,
    group ? fleet.groups[group] : undefined,
    own,
    pin,
  ];
  const s = {} as Record<string, unknown>;
  for (const k of SETTING_KEYS) {
    for (const layer of layers) {
      const v = (layer as Record<string, unknown> | undefined)?.[k];
      if (v !== undefined) s[k] = v;
    }
  }
  const body = { fleet: fleet.fleet, device, group, ...(s as unknown as DeviceSettings) };
  const canonical = JSON.stringify(body, Object.keys(body).sort());
  return { ...body, configId: createHash('sha256').update(canonical).digest('hex').slice(0, 16) };
}

/** Every device's effective config, by device id. */
export function effectiveConfigs(fleet: FleetFile): Map<string, EffectiveConfig> {
  return new Map(Object.keys(fleet.devices).map((d) => [d, effectiveConfig(fleet, d)]));
}

/** The config id of settings served with a registry bundle: the settings' id and the
 * bundle's manifest hash, so a new bundle for the same settings is a new config. */
export function configIdWithBundle(settingsId: string, bundle: { manifestSha256: string }): string {
  return createHash('sha256')
    .update(`${settingsId}/${bundle.manifestSha256}`)
    .digest('hex')
    .slice(0, 16);
}
