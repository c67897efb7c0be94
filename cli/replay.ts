import { statSync } from 'node:fs';
import { Command, Option } from 'commander';
import { loadConfig, type Config } from '../config.js';
import { DecodeError } from '../errors.js';
import { logger } from '../logger.js';
import { Pipeline } from '../pipeline.js';
import { validateRequestLog } from '../schemas/codec.js';
import type { RequestLog } from '../schemas/index.js';
import { NdjsonSink } from '../sinks/ndjson.js';
import { readAvroFile } from './avro-file.js';
import { Progress } from './progress.js';

/** What a replay did. */
export interface ReplaySummary {
  records: number;
  rejected: number;
  late: number;
  windows: number;
  verdicts: number;
  anomalous: number;
  ruleUpserts: number;
  ruleDeletes: number;
  lines: { verdicts: number; rules: number; aggregates: number };
}

/** Options of {@link replay}. */
export interface ReplayOptions {
  input: string;
  verdicts: string;
  rules: string;
  aggregates?: string;
  allVerdicts?: boolean;
  config: Config;
  /** Shows progress (default true). */
  progress?: boolean;
}

/**
 * Runs the live pipeline over an Avro object container file in event time, with no servers:
 * the same windows, detectors and rule lifecycle, NDJSON sinks instead of ClickHouse and Kafka.
 * Never reads the wall clock for results, so the same file and config give the same output.
 */
export async function replay(opts: ReplayOptions): Promise<ReplaySummary> {
  const sink = new NdjsonSink(
    { verdicts: opts.verdicts, rules: opts.rules, ...(opts.aggregates ? { aggregates: opts.aggregates } : {}) },
    opts.allVerdicts ?? false,
  );
  const pipeline = new Pipeline(opts.config, [sink]);
  await pipeline.connect();
  const bytes = statSync(opts.input).size;
  const progress = opts.progress === false ? null : new Progress(`replay ${opts.input}`, null);
  let records = 0;
  let rejected = 0;
  try {
    for await (const raw of readAvroFile(opts.input)) {
      records++;
      let log: RequestLog;
      try {
        log = validateRequestLog(raw);
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        rejected++;
        if (rejected <= 10) logger.warn({ record: records, reason: err.reason }, `record rejected: ${err.message}`);
        continue;
      }
      pipeline.ingest(log);
      if (pipeline.hasClosedWindows) await pipeline.processClosed();
      if ((records & 0x3fff) === 0) progress?.update(records, { bytes });
    }
    await pipeline.finish();
  } finally {
    progress?.stop(records);
    await pipeline.close();
  }
  const t = pipeline.totals;
  return {
    records,
    rejected,
    late: pipeline.windows.stats.late,
    windows: t.windows,
    verdicts: t.verdicts,
    anomalous: t.anomalous,
    ruleUpserts: t.ruleUpserts,
    ruleDeletes: t.ruleDeletes,
    lines: sink.counts,
  };
}

/** Commander's collector of a repeatable option. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** `burstwatch replay` (CONTRACTS §5). */
export function replayCommand(): Command {
  return new Command('replay')
    .description('Run the pipeline over an .avro file of request logs in event time, with no servers; write NDJSON verdicts and rule changes.')
    .requiredOption('--input <file.avro>', 'Avro object container file of request logs (any compatible writer schema)')
    .requiredOption('--verdicts <out.ndjson>', 'where to write verdicts (anomalous ones, or all with --all-verdicts)')
    .requiredOption('--rules <out.ndjson>', 'where to write rule changes (upserts and deletes, in event time)')
    .option('--aggregates <out.ndjson>', "also write each closed window's aggregates per entity")
    .option('--all-verdicts', 'write every scored window, not only anomalous ones', false)
    .option('--allow <entity>', "never make a rule for this entity, e.g. 'asn:15169' or 'ja4:t13d…' (repeatable)", collect, [])
    .option('--config <file>', 'JSON configuration file (see docs/configuration in the README)')
    .addOption(new Option('--no-progress', 'do not show progress'))
    .addHelpText('after', '\nExample:\n  npx burstwatch replay --input traffic.avro --verdicts v.ndjson --rules r.ndjson --allow asn:15169\n')
    .action(async (o: { input: string; verdicts: string; rules: string; aggregates?: string; allVerdicts: boolean; allow: string[]; config?: string; progress: boolean }) => {
      const base = loadConfig(o.config);
      const config = loadConfig(o.config, { rules: { allow: [...base.rules.allow, ...o.allow] } });
      const started = Date.now();
      const s = await replay({ ...o, config, ...(o.aggregates ? { aggregates: o.aggregates } : {}) });
      const secs = (Date.now() - started) / 1000;
      process.stdout.write(
        `replayed ${s.records} records in ${secs.toFixed(1)} s (${Math.round(s.records / secs)}/s): ` +
          `${s.windows} windows, ${s.verdicts} verdicts, ${s.anomalous} anomalous, ` +
          `${s.ruleUpserts} rule upserts, ${s.ruleDeletes} deletes, ${s.late} late, ${s.rejected} rejected\n`,
      );
    });
}
