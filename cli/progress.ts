import cliProgress from 'cli-progress';
import { logger } from '../logger.js';

/** Progress of a long run: a bar on a terminal, a structured log line every few seconds otherwise. */
export class Progress {
  private bar: cliProgress.SingleBar | null = null;
  private lastLog = 0;
  private readonly started = Date.now();

  constructor(
    private readonly what: string,
    private readonly total: number | null,
    private readonly unit = 'events',
  ) {
    if (process.stderr.isTTY && total !== null) {
      this.bar = new cliProgress.SingleBar(
        {
          format: unit === '%' ? `${what} [{bar}] {percentage}%` : `${what} [{bar}] {percentage}% | {value}/{total} ${unit} | {rate}/s`,
          stream: process.stderr,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(total, 0, { rate: 0 });
    }
  }

  /** Reports `done` units so far; cheap enough to call often. */
  update(done: number, extra: Record<string, unknown> = {}): void {
    const now = Date.now();
    if (this.bar) {
      if (now - this.lastLog < 100) return;
      this.lastLog = now;
      this.bar.update(done, { rate: Math.round(done / Math.max((now - this.started) / 1000, 0.001)) });
    } else if (now - this.lastLog >= 5000) {
      this.lastLog = now;
      logger.info({ progress: this.what, done, total: this.total, ...extra }, `${this.what}: ${done} ${this.unit}`);
    }
  }

  /** Ends the display. */
  stop(done: number): void {
    if (this.bar) {
      this.bar.update(done);
      this.bar.stop();
    }
  }
}
