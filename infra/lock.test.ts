import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InfraError } from '../errors.js';
import { withInfraLock } from './lock.js';
import { sleep } from './processes.js';

const savedHome = process.env.BURSTWATCH_HOME;
let home: string;

beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'burstwatch-lock-'));
  process.env.BURSTWATCH_HOME = home;
});

afterAll(() => {
  // Workers can be reused by later files; do not leak the override.
  if (savedHome === undefined) delete process.env.BURSTWATCH_HOME;
  else process.env.BURSTWATCH_HOME = savedHome;
  rmSync(home, { recursive: true, force: true });
});

describe('withInfraLock', () => {
  it('lets one holder in at a time', async () => {
    const events: string[] = [];
    const hold = (name: string) =>
      withInfraLock(async () => {
        events.push(`${name} in`);
        await sleep(150);
        events.push(`${name} out`);
      });
    await Promise.all([hold('a'), hold('b')]);
    // Whoever went first left before the other came in: a in, a out, b in, b out (or b first).
    const who = events.map((e) => e.split(' ')[0]);
    expect(events).toHaveLength(4);
    expect(who[0]).toBe(who[1]);
    expect(who[2]).toBe(who[3]);
    expect(existsSync(join(home, 'infra.lock'))).toBe(false);
  });

  it('breaks the lock of a holder that died without releasing it', async () => {
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    writeFileSync(join(home, 'infra.lock'), `${dead} stale-token\n`);
    await expect(withInfraLock(async () => 'ran')).resolves.toBe('ran');
    expect(existsSync(join(home, 'infra.lock'))).toBe(false);
  });

  it('waits for a live holder and gives up with a retriable error after timeoutMs', async () => {
    writeFileSync(join(home, 'infra.lock'), `${process.pid} someone-elses-token\n`);
    let ran = false;
    const attempt = withInfraLock(
      async () => {
        ran = true;
      },
      { timeoutMs: 400 },
    );
    await expect(attempt).rejects.toThrow(/another burstwatch infra command/);
    await attempt.catch((err: unknown) => {
      expect(err).toBeInstanceOf(InfraError);
      expect((err as InfraError).retriable).toBe(true);
    });
    expect(ran).toBe(false);
    rmSync(join(home, 'infra.lock'));
  });
});
