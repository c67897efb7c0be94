import { randomUUID } from 'node:crypto';
import { link, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { InfraError } from '../errors.js';
import { stateDir } from './paths.js';
import { sleep, type Progress } from './processes.js';

interface Holder {
  pid: number;
  token: string;
}

/** How long to wait for another `infra up`/`down` to finish, ms. A cold install can take minutes. */
export const DEFAULT_LOCK_TIMEOUT_MS = 15 * 60_000;

/**
 * Runs `fn` while holding the exclusive lock `<stateDir>/infra.lock`, so two processes running
 * `infra up` at once cannot both start a server. Waits up to `timeoutMs` (default 15 min) for a
 * live holder; the lock of a holder that died without releasing is broken.
 */
export async function withInfraLock<T>(
  fn: () => Promise<T>,
  options: { timeoutMs?: number; onProgress?: Progress } = {},
): Promise<T> {
  const dir = stateDir();
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'infra.lock');
  // The token, not the pid, identifies the holder: vitest threads share one pid.
  const token = randomUUID();
  await acquire(file, token, options.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS, options.onProgress);
  try {
    return await fn();
  } finally {
    const holder = await readHolder(file);
    if (holder?.token === token) await unlink(file).catch(() => undefined);
  }
}

async function acquire(file: string, token: string, timeoutMs: number, onProgress?: Progress): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let reportedPid: number | undefined;
  for (;;) {
    try {
      // 'wx' is O_CREAT|O_EXCL: exactly one process can create the file.
      const handle = await open(file, 'wx');
      try {
        await handle.writeFile(`${process.pid} ${token}\n`);
      } finally {
        await handle.close();
      }
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new InfraError(`cannot create lock file ${file}: ${(err as Error).message}`, { cause: err });
      }
    }
    const holder = await readHolder(file);
    if (holder === undefined) {
      // Vanished (released) or still empty because its creator is between open and write.
      if (await olderThan(file, 5_000)) await breakStale(file, undefined);
    } else if (!pidAlive(holder.pid)) {
      await breakStale(file, holder);
      continue; // try to take it at once
    } else {
      if (Date.now() > deadline) {
        throw new InfraError(
          `another burstwatch infra command (pid ${holder.pid}) has held ${file} for over ` +
            `${Math.round(timeoutMs / 1000)} s; wait for it, or delete the file if that process is not burstwatch`,
          { retriable: true },
        );
      }
      if (reportedPid !== holder.pid) {
        onProgress?.(`waiting for another burstwatch infra command (pid ${holder.pid}) to finish`);
        reportedPid = holder.pid;
      }
    }
    await sleep(250);
  }
}

/**
 * Removes a dead holder's lock. Renaming is atomic, so of several processes that found the same
 * stale lock only one moves it; if what it moved turns out to be a fresh live lock (another
 * process broke the stale one and re-locked in between), it is put back with `link`, which like
 * 'wx' refuses to overwrite.
 */
async function breakStale(file: string, stale: Holder | undefined): Promise<void> {
  const aside = `${file}.${process.pid}.${randomUUID()}.stale`;
  try {
    await rename(file, aside);
  } catch {
    return; // someone else moved or released it
  }
  const moved = await readHolder(aside);
  if (moved !== undefined && moved.token !== stale?.token && pidAlive(moved.pid)) {
    await link(aside, file).catch(() => undefined);
  }
  await unlink(aside).catch(() => undefined);
}

async function readHolder(file: string): Promise<Holder | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  const [pidText, token] = text.trim().split(/\s+/);
  const pid = Number(pidText);
  return Number.isInteger(pid) && pid > 0 && token ? { pid, token } : undefined;
}

async function olderThan(file: string, ms: number): Promise<boolean> {
  try {
    return Date.now() - (await stat(file)).mtimeMs > ms;
  } catch {
    return false;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
