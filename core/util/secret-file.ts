/**
 * Files that hold secrets (credential files, password hashes) are written whole and
 * private: a new file beside the target with mode 0600, flushed, then renamed over it.
 * The target therefore never exists with another mode or half written, whatever mode an
 * older copy had (writeFile's `mode` only applies when it creates the file).
 */
import { randomBytes } from 'node:crypto';
import { chmod, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export async function writeSecretFile(file: string, data: string | Buffer): Promise<void> {
  const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(data);
    await fh.chmod(0o600); // whatever the umask made of it
    await fh.sync();
  } catch (e) {
    await fh.close();
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  try {
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  await chmod(file, 0o600);
}
