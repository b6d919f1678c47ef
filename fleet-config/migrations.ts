/**
 * Versioned migrations of the fleet file (the way zigbee2mqtt migrates its settings):
 * MIGRATIONS[n] turns a version-n document into version n + 1. Loading applies them in
 * order up to FLEET_VERSION, so an old file keeps working and `splitfleet fleet migrate`
 * can write it back in the current format. Version 1 is the first format: no migration
 * exists yet, and a file without a version or with a version this code does not know is
 * refused by load.ts, never guessed.
 */
import { FLEET_VERSION } from './schema.js';

export type FleetDocument = Record<string, unknown>;

export const MIGRATIONS: Readonly<Record<number, (doc: FleetDocument) => FleetDocument>> = {};

/** The document in the current version (unchanged when it is current or not versioned). */
export function migrate(doc: FleetDocument): FleetDocument {
  let out = doc;
  let v = out.version;
  while (typeof v === 'number' && Number.isInteger(v) && v < FLEET_VERSION) {
    const step = MIGRATIONS[v];
    if (!step) break; // the schema then reports the unsupported version
    out = { ...step(out), version: v + 1 };
    v = out.version;
  }
  return out;
}
