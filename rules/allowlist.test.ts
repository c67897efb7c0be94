import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AllowlistFile, readAllowlistFile } from './allowlist.js';

describe('allowlist file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bw-allow-'));
  const file = join(dir, 'allow.txt');
  let follower: AllowlistFile | null = null;
  afterEach(() => follower?.stop());

  it('reads entries, skipping blanks and comments, and names the line of a bad one', () => {
    writeFileSync(file, '# verified crawlers\nasn:15169\n\n  ja4:t13d1516h2_8daaf6152771_02713d6af862  # our app\n');
    expect(readAllowlistFile(file)).toEqual(['asn:15169', 'ja4:t13d1516h2_8daaf6152771_02713d6af862']);
    writeFileSync(file, 'asn:15169\nasn:google\n');
    expect(() => readAllowlistFile(file)).toThrow(`${file}:2: 'asn:google' is not an allowlist entry`);
  });

  it('follows the file: an edit or a replacement by rename takes effect, a bad edit keeps the entries in force', async () => {
    writeFileSync(file, 'asn:15169\n');
    const seen: string[][] = [];
    follower = new AllowlistFile(file, (e) => seen.push(e), 50);
    follower.start();
    expect(follower.entries).toEqual(['asn:15169']);
    const until = async (n: number): Promise<void> => {
      for (let i = 0; i < 100 && seen.length < n; i++) await new Promise((r) => setTimeout(r, 20));
    };
    writeFileSync(file, 'asn:15169\nasn:8075\n');
    await until(1);
    expect(seen.at(-1)).toEqual(['asn:15169', 'asn:8075']);
    // Config managers write a new file and rename it over the old one.
    writeFileSync(join(dir, 'next.txt'), 'ja4:t13d_x\n');
    renameSync(join(dir, 'next.txt'), file);
    await until(2);
    expect(seen.at(-1)).toEqual(['ja4:t13d_x']);
    writeFileSync(file, 'not an entry\n');
    expect(follower.reload('test')).toBe(false);
    expect(follower.entries).toEqual(['ja4:t13d_x']);
    // SIGHUP reads it again.
    writeFileSync(file, 'asn:1\n');
    process.emit('SIGHUP', 'SIGHUP');
    expect(follower.entries).toEqual(['asn:1']);
    rmSync(dir, { recursive: true, force: true });
  });
});
