import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import type { WindowAggregateRow } from '../consumers/aggregates.js';
import type { Verdict } from '../detectors/verdict.js';
import { ruleChangeLine, type RuleChange } from '../rules/lifecycle.js';
import type { PipelineSink } from './sink.js';

/** Appends JSON lines to a file, awaiting 'drain' so a slow disk pushes back instead of buffering without bound. */
export class NdjsonWriter {
  private readonly stream: WriteStream;
  /** Lines written. */
  lines = 0;

  constructor(readonly path: string) {
    this.stream = createWriteStream(path, { flags: 'w' });
  }

  /** Writes one object as a line. */
  async write(obj: unknown): Promise<void> {
    this.lines++;
    if (!this.stream.write(JSON.stringify(obj) + '\n')) await once(this.stream, 'drain');
  }

  /** Ends the file and waits until it is on disk. */
  async close(): Promise<void> {
    if (this.stream.closed) return;
    this.stream.end();
    await once(this.stream, 'close');
  }
}

/** Replay output: NDJSON files for verdicts, rule changes and (optionally) aggregates (CONTRACTS §3–5). */
export class NdjsonSink implements PipelineSink {
  readonly name = 'ndjson';
  private readonly verdicts: NdjsonWriter | null;
  private readonly rules: NdjsonWriter | null;
  private readonly aggregates: NdjsonWriter | null;

  constructor(paths: { verdicts?: string; rules?: string; aggregates?: string }, private readonly allVerdicts = false) {
    this.verdicts = paths.verdicts ? new NdjsonWriter(paths.verdicts) : null;
    this.rules = paths.rules ? new NdjsonWriter(paths.rules) : null;
    this.aggregates = paths.aggregates ? new NdjsonWriter(paths.aggregates) : null;
  }

  /** Lines written per file. */
  get counts(): { verdicts: number; rules: number; aggregates: number } {
    return { verdicts: this.verdicts?.lines ?? 0, rules: this.rules?.lines ?? 0, aggregates: this.aggregates?.lines ?? 0 };
  }

  async connect(): Promise<void> {}

  async writeAggregates(rows: readonly WindowAggregateRow[]): Promise<void> {
    if (this.aggregates) for (const r of rows) await this.aggregates.write(r);
  }

  async writeVerdicts(verdicts: readonly Verdict[]): Promise<void> {
    if (!this.verdicts) return;
    for (const v of verdicts) if (v.anomalous || this.allVerdicts) await this.verdicts.write(v);
  }

  async writeRuleChanges(changes: readonly RuleChange[]): Promise<void> {
    if (this.rules) for (const c of changes) await this.rules.write(ruleChangeLine(c));
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {
    await Promise.all([this.verdicts?.close(), this.rules?.close(), this.aggregates?.close()]);
  }
}
