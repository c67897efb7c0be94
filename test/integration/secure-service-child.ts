/**
 * Runs the live service once for security.test.ts, in a process of its own so that the test can
 * read every byte it writes (pino writes to fd 2 directly). Argument: a job file holding the raw
 * config, the number of input messages to wait for and how long to wait for them to settle, ms.
 * Prints one report line (secure-services.ts `REPORT_PREFIX`) on stdout, then exits.
 */
import { readFileSync } from 'node:fs';
import { startService, type Service } from '../../cli/service.js';
import { parseConfig } from '../../config.js';
import { logger } from '../../logger.js';
import { REPORT_PREFIX, type ChildReport, type ErrorReport } from './secure-services.js';

function describeError(err: unknown): ErrorReport | null {
  if (err === null || err === undefined) return null;
  const e = err as { name?: string; message?: string; retriable?: boolean; type?: string; cause?: unknown };
  const causes: string[] = [];
  for (let c = e.cause as { name?: string; message?: string; cause?: unknown } | undefined, depth = 0; c && depth < 5; c = c.cause as typeof c, depth++) {
    causes.push(`${c.name ?? 'Error'}: ${c.message ?? String(c)}`);
  }
  return { name: e.name ?? 'Error', message: e.message ?? String(err), retriable: typeof e.retriable === 'boolean' ? e.retriable : null, type: e.type ?? null, causes };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<ChildReport> {
  const job = JSON.parse(readFileSync(process.argv[2] as string, 'utf8')) as { config: unknown; messages: number; settleMs: number };
  const t0 = Date.now();
  let service: Service;
  try {
    service = await startService(parseConfig(job.config));
  } catch (err) {
    return { started: false, error: describeError(err), fatal: null, settled: false, stats: null, ms: Date.now() - t0 };
  }
  const until = Date.now() + job.settleMs;
  let settled = false;
  while (Date.now() < until && !service.fatal() && !(settled = await service.settled(job.messages).catch(() => false))) await sleep(250);
  await service.stop();
  const s = service.stats;
  return {
    started: true,
    error: null,
    fatal: describeError(service.fatal()),
    settled,
    stats: {
      messages: s.panes.messages,
      decoded: s.panes.decoded,
      deadLettered: s.panes.deadLettered,
      windowsClosed: s.windows.windowsClosed,
      verdicts: s.windows.verdicts,
      ruleUpserts: s.rules.upserts,
      edgePublished: service.edgeRules.published,
      inserted: { ...service.clickhouse.stats.inserted },
    },
    ms: Date.now() - t0,
  };
}

const report = await main().catch((err: unknown): ChildReport => ({ started: false, error: describeError(err), fatal: null, settled: false, stats: null, ms: 0 }));
process.stdout.write(`${REPORT_PREFIX}${JSON.stringify(report)}\n`);
// Every pending log line reaches fd 2 before the exit (kafkajs may keep sockets open after a failed start).
logger.flush(() => process.exit(0));
