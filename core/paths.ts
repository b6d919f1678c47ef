/** Paths inside the installed project, from source (tsx) or from dist/ alike. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (
      existsSync(pkg) &&
      (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'splitfleet'
    ) {
      return dir;
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('splitfleet package root not found');
    dir = up;
  }
}

export const PROJECT_ROOT = findRoot();
/** The installed project's version (its package.json). */
export const PROJECT_VERSION: string = (() => {
  const v: unknown = (
    JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
      version?: unknown;
    }
  ).version;
  return typeof v === 'string' ? v : '0.0.0';
})();
export const ZOO_DIR = join(PROJECT_ROOT, 'models', 'zoo');
export const SAMPLE_DIR = join(PROJECT_ROOT, 'models', 'samples', 'cifar10-test-sample');
