import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stateDir } from '../../infra/index.js';

/**
 * A current ClickHouse (26.x) embedded by chdb from PyPI, since Debian only packages 18.16.
 * The chdb virtualenv is created under the state dir on first use.
 */
const script = fileURLToPath(new URL('./modern-clickhouse.py', import.meta.url));

function python(): string {
  const venv = join(stateDir(), 'chdb-venv');
  const bin = join(venv, 'bin', 'python');
  if (!existsSync(bin)) {
    mkdirSync(stateDir(), { recursive: true });
    execFileSync('python3', ['-m', 'venv', venv], { stdio: 'inherit' });
    execFileSync(join(venv, 'bin', 'pip'), ['install', '--quiet', 'chdb==4.4.0'], { stdio: 'inherit' });
  }
  return bin;
}

/** Runs `statements` in one chdb session; each result is the statement's JSONEachRow text, or its error. */
export function runModernClickHouse(statements: string[]): (string | { error: string })[] {
  const res = spawnSync(python(), [script], { input: JSON.stringify(statements), encoding: 'utf8', maxBuffer: 256 << 20 });
  if (res.status !== 0) throw new Error(`chdb failed: ${res.stderr}`);
  return JSON.parse(res.stdout) as (string | { error: string })[];
}
