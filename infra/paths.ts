import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InfraError } from '../errors.js';

let cachedRoot: string | undefined;

/**
 * Absolute path of the burstwatch package root: the nearest ancestor of this file whose
 * package.json is named `burstwatch`. Walking up (rather than a fixed `..`) makes the same code
 * work from source (`infra/*.ts` under vitest) and from the build (`dist/infra/*.js`).
 */
export function packageRoot(): string {
  if (cachedRoot !== undefined) return cachedRoot;
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && manifestName(manifest) === 'burstwatch') {
      cachedRoot = dir;
      return dir;
    }
    if (dirname(dir) === dir) {
      throw new InfraError(`no package.json named "burstwatch" above ${start}; is the package installed intact?`);
    }
  }
}

function manifestName(file: string): string | undefined {
  try {
    const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
    if (typeof parsed === 'object' && parsed !== null && 'name' in parsed && typeof parsed.name === 'string') {
      return parsed.name;
    }
  } catch {
    // A broken manifest is not ours; keep walking up.
  }
  return undefined;
}

/**
 * Directory for downloaded jars, data, logs, pid files and the infra lock: `$BURSTWATCH_HOME`
 * when set, else `<packageRoot>/.burstwatch` (git-ignored). Read on every call so a test or a
 * second checkout can point it elsewhere.
 */
export function stateDir(): string {
  const fromEnv = process.env.BURSTWATCH_HOME;
  return fromEnv ? resolve(fromEnv) : join(packageRoot(), '.burstwatch');
}

/** `<stateDir>/<service>`: everything one service owns (data, logs, config, pid file). */
export function serviceDir(service: string): string {
  return join(stateDir(), service);
}

/** The burstwatch package version from package.json (e.g. `0.1.0`). */
export function packageVersion(): string {
  const parsed = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version?: unknown };
  return typeof parsed.version === 'string' ? parsed.version : 'unknown';
}
