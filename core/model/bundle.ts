/**
 * core/model in one import: a bundle's manifest (manifest.ts: types, schema,
 * migrations), loading and verifying its files (load.ts), the naming rule for bundles
 * (ref.ts) and the one resolver from a model ref to a bundle (zoo.ts).
 */
export * from './manifest.js';
export * from './load.js';
export {
  bundleFor,
  DEFAULT_MODEL,
  isBundleFolder,
  pickBundle,
  resolveBundle,
  scanZoo,
  type BrokenBundle,
  type Candidate,
  type ResolveOptions,
  type ZooBundle,
  type ZooListing,
  ZOO_ENV,
  zooDirs,
} from './zoo.js';
