import type { Bundle } from '../../core/model/load.js';
import { resolveBundle } from '../../core/model/zoo.js';

export const MODEL = 'resnet9w05-cifar10';
let cached: Promise<Bundle> | undefined;

/** The shipped model bundle (hash-checked once per test file). */
export function shippedModel(): Promise<Bundle> {
  return (cached ??= resolveBundle(MODEL));
}
