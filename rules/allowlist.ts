import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import { logger } from '../logger.js';
import { allowEntrySchema } from './lifecycle.js';

/**
 * Reads an allowlist file: one entry per line (`asn:15169`, `ja4:t13d…`), blank lines and `#`
 * comments ignored. Throws an Error naming the file, the line and the bad entry.
 */
export function readAllowlistFile(path: string): string[] {
  const text = readFileSync(path, 'utf8');
  const out: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') return;
    const r = allowEntrySchema.safeParse(line);
    if (!r.success) throw new Error(`${path}:${i + 1}: '${line.slice(0, 80)}' is not an allowlist entry (${r.error.issues[0]?.message ?? 'invalid'})`);
    out.push(r.data);
  });
  return out;
}

/**
 * An allowlist file followed while the service runs (`rules.allow_file`): when it changes, or on
 * SIGHUP, it is read again and `apply` gets the new entries, so an allowlist change takes effect
 * without a restart. A file that no longer parses is logged with its bad line and the entries in
 * force are kept. Polled (fs.watchFile), since editors and config managers replace files by
 * rename, which an fs.watch handle on the old inode would miss.
 */
export class AllowlistFile {
  private current: string[];
  private readonly onHup = (): void => {
    this.reload('SIGHUP');
  };
  private readonly onChange = (cur: Stats, prev: Stats): void => {
    if (cur.mtimeMs !== prev.mtimeMs || cur.size !== prev.size || cur.ino !== prev.ino) this.reload('changed');
  };

  /** Reads the file once (throws if it does not parse: a config error at start is fatal). */
  constructor(
    readonly path: string,
    private readonly apply: (entries: string[]) => void,
    private readonly intervalMs = 1_000,
  ) {
    this.current = readAllowlistFile(path);
  }

  /** The entries in force. */
  get entries(): string[] {
    return [...this.current];
  }

  start(): void {
    watchFile(this.path, { interval: this.intervalMs, persistent: false }, this.onChange);
    process.on('SIGHUP', this.onHup);
  }

  stop(): void {
    unwatchFile(this.path, this.onChange);
    process.off('SIGHUP', this.onHup);
  }

  /** Reads the file again and applies it if it parses; returns whether it did. */
  reload(why: string): boolean {
    let next: string[];
    try {
      next = readAllowlistFile(this.path);
    } catch (e) {
      logger.error({ file: this.path, err: (e as Error).message }, 'allowlist file not reloaded; the entries in force are kept');
      return false;
    }
    this.current = next;
    this.apply(next);
    logger.info({ file: this.path, entries: next.length, why }, 'allowlist reloaded');
    return true;
  }
}
