/**
 * The registry's rule for naming a bundle, shared by every parser of a message that names
 * one (configs, OTA fetches) and by the bundle stores: no file system call is made for a
 * name or version that breaks it. Pure: no imports, so protocol code can use it.
 */

/** The model a device runs when nothing names one (the shipped backbone). */
export const DEFAULT_MODEL = 'resnet9w05-cifar10';

/** A bundle's name: one path segment of [a-z0-9.-], never `.` or `..`, at most 64 long.
 * The registry and the device both hold bundles in folders named `<name>-v<version>`. */
export const BUNDLE_NAME_PATTERN = '^[a-z0-9][a-z0-9.-]{0,63}$';
export const MAX_BUNDLE_VERSION = 65535;
const BUNDLE_NAME_RE = new RegExp(BUNDLE_NAME_PATTERN);
const SHA256_RE = /^[0-9a-f]{64}$/;

/** A bundle as a message names it. */
export interface BundleRef {
  name: string;
  version: number;
  manifestSha256: string;
}

/** Whether `name` is a bundle name by the registry's rule. */
export function isBundleName(name: unknown): name is string {
  return typeof name === 'string' && BUNDLE_NAME_RE.test(name);
}

/** Whether `version` is a bundle version (an integer 1..65535). */
export function isBundleVersion(version: unknown): version is number {
  return (
    typeof version === 'number' &&
    Number.isInteger(version) &&
    version >= 1 &&
    version <= MAX_BUNDLE_VERSION
  );
}

/** What is wrong with `ref` as a bundle ref, or null when it keeps the rule. */
export function bundleRefProblem(ref: unknown): string | null {
  if (typeof ref !== 'object' || ref === null) return 'bundle ref is not an object';
  const { name, version, manifestSha256 } = ref as Record<string, unknown>;
  if (!isBundleName(name))
    return `bundle name ${clip(name)} is not 1..64 of [a-z0-9.-] starting with a letter or digit`;
  if (!isBundleVersion(version))
    return `bundle version ${clip(version)} is not an integer 1..65535`;
  if (typeof manifestSha256 !== 'string' || !SHA256_RE.test(manifestSha256))
    return `bundle manifest sha256 ${clip(manifestSha256)} is not 64 hex digits`;
  return null;
}

/** Whether `ref` is a bundle ref by the registry's rule. */
export function isBundleRef(ref: unknown): ref is BundleRef {
  return bundleRefProblem(ref) === null;
}

/** A value for an error message: JSON, at most 80 characters. */
function clip(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
