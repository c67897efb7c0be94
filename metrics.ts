import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { DeadLetterSink } from './consumers/dead-letter.js';
import type { KafkaSource } from './consumers/kafka-source.js';
import type { Pipeline } from './pipeline.js';
import type { ClickHouseSink } from './sinks/clickhouse.js';
import type { EdgeRuleSink } from './sinks/edge-rules.js';

/**
 * Prometheus metrics of the live service. Values are read from the stages' own counters at
 * scrape time (prom-client `collect`), so the hot path only increments plain numbers.
 */
export function createMetrics(parts: {
  source: KafkaSource;
  pipeline: Pipeline;
  deadLetter: DeadLetterSink;
  clickhouse?: ClickHouseSink;
  edgeRules?: EdgeRuleSink;
}): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'burstwatch_process_' });
  const { source, pipeline, deadLetter, clickhouse, edgeRules } = parts;
  const gauge = (name: string, help: string, read: () => number): void => {
    new Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
  };
  const counter = (name: string, help: string, read: () => number): void => {
    new Counter({ name, help, registers: [registry], collect() { this.reset(); this.inc(read()); } });
  };
  counter('burstwatch_messages_total', 'Messages fetched from the input topic.', () => source.stats.messages);
  counter('burstwatch_records_decoded_total', 'Records decoded and windowed.', () => source.stats.decoded);
  new Counter({
    name: 'burstwatch_decode_errors_total',
    help: 'Messages sent to the dead-letter topic, by reason.',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of deadLetter.counts) this.inc({ reason }, n);
    },
  });
  counter('burstwatch_late_records_total', 'Records whose pane was already sealed when they arrived (counted in no window).', () => pipeline.windows.stats.late);
  counter('burstwatch_late_merge_requests_total', 'Requests of pane partials that reached the merge stage after their pane was complete.', () => pipeline.windows.lateAtMerge);
  counter('burstwatch_replayed_closed_records_total', 'Records re-read after a restart for windows emitted before it.', () => pipeline.windows.stats.replayedClosed);
  counter('burstwatch_pane_evictions_total', 'Entities evicted from a pane by windows.max_entities_per_pane.', () => pipeline.windows.stats.evicted.entities);
  counter('burstwatch_pane_evicted_requests_total', 'Requests carried by entities evicted from panes.', () => pipeline.windows.stats.evicted.requests);
  gauge('burstwatch_window_entities', 'Entities held inside open windows.', () => pipeline.windows.trackedEntities);
  counter('burstwatch_windows_closed_total', 'Windows closed by the watermark.', () => pipeline.windows.stats.windowsClosed);
  counter('burstwatch_verdicts_total', 'Verdicts produced (scored entity windows).', () => pipeline.totals.verdicts);
  counter('burstwatch_anomalous_verdicts_total', 'Verdicts decided anomalous.', () => pipeline.totals.anomalous);
  counter('burstwatch_entity_evictions_total', 'Entities evicted from detector state by the cap.', () => pipeline.scorer.evictions);
  counter('burstwatch_offset_commits_total', 'Offset commits after durable writes.', () => source.stats.commits);
  gauge('burstwatch_rules_active', 'Rules in force.', () => pipeline.rules.rules.length);
  gauge('burstwatch_open_panes', 'Panes held by the window engine.', () => pipeline.windows.openPanes);
  gauge('burstwatch_watermark_seconds', 'Event-time watermark, epoch seconds.', () =>
    Number.isFinite(pipeline.windows.watermark) ? pipeline.windows.watermark / 1000 : 0,
  );
  if (clickhouse) {
    counter('burstwatch_clickhouse_rows_total', 'Rows inserted into ClickHouse.', () =>
      Object.values(clickhouse.stats.inserted).reduce((a, b) => a + b, 0),
    );
    counter('burstwatch_clickhouse_retries_total', 'ClickHouse operations retried.', () => clickhouse.stats.retries);
  }
  if (edgeRules) counter('burstwatch_rule_messages_total', 'Messages published to the edge-rule topic.', () => edgeRules.published);
  return registry;
}

/** Serves `/metrics`, `/healthz` (process up) and `/readyz` (consuming) on host:port. */
export async function serveMetrics(registry: Registry, host: string, port: number, ready: () => boolean): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url === '/metrics') {
      registry
        .metrics()
        .then((text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        })
        .catch((err: unknown) => {
          res.writeHead(500);
          res.end(String(err));
        });
    } else if (req.url === '/healthz') {
      res.writeHead(200).end('ok\n');
    } else if (req.url === '/readyz') {
      const ok = ready();
      res.writeHead(ok ? 200 : 503).end(ok ? 'ready\n' : 'not ready\n');
    } else {
      res.writeHead(404).end('not found: try /metrics, /healthz or /readyz\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
