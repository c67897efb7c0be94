import { InfraError, errorMessage } from '../errors.js';
import { isRoot, run, which, type Progress } from './processes.js';

/** How long apt-get may wait for another apt/dpkg run to release its lock, seconds. */
const DPKG_LOCK_TIMEOUT_S = 300;

/** Longest one apt-get run may take, ms (ClickHouse alone is a few hundred MB). */
const APT_TIMEOUT_MS = 30 * 60_000;

/** The exact command a non-root user should run to install `packages`. */
export function aptCommand(packages: readonly string[]): string {
  return `sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y ${packages.join(' ')}`;
}

/**
 * Installs Debian packages with apt-get (root only). A fresh machine or container often has no
 * package lists yet, so when the first install fails it runs `apt-get update` and tries once more.
 * Non-root callers and non-Debian systems get an InfraError with the command to run themselves.
 */
export async function aptInstall(packages: readonly string[], onProgress?: Progress): Promise<void> {
  if (!which('apt-get')) {
    throw new InfraError(
      `${packages.join(', ')} not found and this system has no apt-get; install them with your package manager and retry`,
    );
  }
  if (!isRoot()) {
    throw new InfraError(`${packages.join(', ')} not installed; installing needs root. Run:\n  ${aptCommand(packages)}`);
  }
  const options = { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeoutMs: APT_TIMEOUT_MS };
  const waitForLock = ['-o', `DPkg::Lock::Timeout=${DPKG_LOCK_TIMEOUT_S}`];
  const install = [...waitForLock, 'install', '-y', '--no-install-recommends', ...packages];
  onProgress?.(`apt-get install ${packages.join(' ')}`);
  try {
    await run('apt-get', install, options);
    return;
  } catch {
    onProgress?.('apt-get install failed; running apt-get update and retrying');
  }
  try {
    await run('apt-get', [...waitForLock, 'update'], options);
  } catch (err) {
    throw new InfraError(`apt-get update failed (are the Debian mirrors reachable?): ${errorMessage(err)}`, {
      cause: err,
      retriable: true,
    });
  }
  try {
    await run('apt-get', install, options);
  } catch (err) {
    throw new InfraError(`could not install ${packages.join(' ')} with apt-get: ${errorMessage(err)}`, { cause: err });
  }
}
