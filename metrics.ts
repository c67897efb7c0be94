import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Service } from './cli/service.js';

/**
 * Prometheus metrics of the live service. Values are read from the stages' own counters at
 * scrape time (prom-client `collect`), so the hot path only increments plain numbers.
 */
export function createMetrics(service: Service): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'burstwatch_process_' });
  const { deadLetter, clickhouse, edgeRules, stats } = service;
  const gauge = (name: string, help: string, read: () => number): void => {
    new Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
  };
  const counter = (name: string, help: string, read: () => number): void => {
    new Counter({ name, help, registers: [registry], collect() { this.reset(); this.inc(read()); } });
  };
  const sum = <T>(xs: readonly T[], f: (x: T) => number): number => xs.reduce((a, x) => a + f(x), 0);
  counter('burstwatch_messages_total', 'Messages fetched from the input topic.', () => stats.panes.messages);
  counter('burstwatch_records_decoded_total', 'Records decoded and windowed.', () => stats.panes.decoded);
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
  counter('burstwatch_late_records_total', 'Records whose pane was already sealed when they arrived (counted in no window).', () => stats.panes.late);
  counter('burstwatch_late_merge_requests_total', 'Requests of pane partials that reached stage 2 after their pane was complete.', () =>
    sum(service.windowTasks(), (t) => t.assembler.stats.lateRequests),
  );
  counter('burstwatch_replayed_records_total', 'Input records re-read after a restart whose panes were already handed on.', () => stats.panes.replayed);
  counter('burstwatch_pane_partials_total', 'Entity pane partials handed to the repartition topic.', () => stats.panes.partials);
  counter('burstwatch_pane_evictions_total', 'Entities evicted from a pane by windows.max_entities_per_pane.', () =>
    stats.panes.evicted.entities + stats.windows.evicted.entities,
  );
  counter('burstwatch_pane_evicted_requests_total', 'Requests carried by entities evicted from panes.', () =>
    stats.panes.evicted.requests + stats.windows.evicted.requests,
  );
  counter('burstwatch_windows_closed_total', 'Windows closed by the watermark (per stage-2 partition).', () => stats.windows.windowsClosed);
  counter('burstwatch_verdicts_total', 'Verdicts produced (scored entity windows).', () => stats.windows.verdicts);
  counter('burstwatch_anomalous_verdicts_total', 'Verdicts decided anomalous.', () => stats.windows.anomalous);
  counter('burstwatch_changelog_records_total', 'State records written to the changelog topics.', () => stats.windows.changelogRecords);
  counter('burstwatch_entity_evictions_total', 'Entities evicted from detector state by the cap.', () => sum(service.windowTasks(), (t) => t.scorer.evictions));
  counter('burstwatch_transactions_total', 'Kafka transactions committed (output, checkpoint and offsets together), by stage.', () =>
    service.panes.stats.transactions + service.windows.stats.transactions + service.rules.stats.transactions,
  );
  counter('burstwatch_state_restores_total', 'Partition tasks built from a checkpoint (start, rebalance).', () =>
    service.panes.stats.restores + service.windows.stats.restores + service.rules.stats.restores,
  );
  counter('burstwatch_rule_windows_total', 'Windows decided by the rules stage.', () => stats.rules.windows);
  gauge('burstwatch_rules_active', 'Rules in force.', () => service.ruleTask()?.rules.rules.length ?? 0);
  gauge('burstwatch_open_panes', 'Panes open in stage 1 plus panes waiting in stage 2.', () =>
    sum(service.paneTasks(), (t) => t.builder.openPanes) + sum(service.windowTasks(), (t) => t.assembler.pendingPanes),
  );
  gauge('burstwatch_window_entities', 'Entities held inside open windows.', () => sum(service.windowTasks(), (t) => t.assembler.trackedEntities));
  gauge('burstwatch_watermark_seconds', 'Event-time watermark of stage 1 (minimum over its partitions), epoch seconds.', () => {
    const wms = service.paneTasks().map((t) => t.builder.watermark).filter((x) => Number.isFinite(x));
    return wms.length > 0 ? Math.min(...wms) / 1000 : 0;
  });
  counter('burstwatch_clickhouse_rows_total', 'Rows inserted into ClickHouse.', () => Object.values(clickhouse.stats.inserted).reduce((a, b) => a + b, 0));
  counter('burstwatch_rule_messages_total', 'Messages published to the edge-rule topic.', () => edgeRules.published);
  counter('burstwatch_dead_letters_truncated_total', 'Dead letters whose value was cut to fit the dead-letter topic (header burstwatch.dlq.truncated).', () => deadLetter.truncated);

  // Lag, backpressure and retries, per stage.
  const stages = { panes: service.panes, windows: service.windows, rules: service.rules } as const;
  new Gauge({
    name: 'burstwatch_consumer_lag_messages',
    help: "Messages between what a stage has consumed and its partition's high watermark (asked of the broker at scrape time), by stage and owned partition.",
    labelNames: ['stage', 'partition'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const [name, st] of Object.entries(stages)) {
        const lags = await st.lag().catch(() => new Map<number, number>());
        for (const [p, lag] of lags) this.set({ stage: name, partition: String(p) }, lag);
      }
    },
  });
  new Gauge({
    name: 'burstwatch_stage_busy_seconds',
    help: 'How long the batch in hand has been running, by stage: a batch waiting out a sink outage grows it (consumption is paused meanwhile).',
    labelNames: ['stage'],
    registers: [registry],
    collect() {
      for (const [name, st] of Object.entries(stages)) this.set({ stage: name }, st.busyMs() / 1000);
    },
  });
  new Counter({
    name: 'burstwatch_stage_retries_total',
    help: 'Batches or transactions that failed with a retriable error and were restarted from the checkpoint, by stage.',
    labelNames: ['stage'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [name, st] of Object.entries(stages)) this.inc({ stage: name }, st.stats.retries);
    },
  });

  // Sinks: health, buffered rows, retries, batch latency.
  gauge('burstwatch_sink_healthy', 'Whether ClickHouse answers (0 during an outage, while its inserts are retried and consumption waits).', () => (clickhouse.healthy ? 1 : 0));
  gauge('burstwatch_sink_buffered_rows', 'ClickHouse rows buffered and not yet inserted.', () => clickhouse.bufferedRows);
  new Counter({
    name: 'burstwatch_sink_retries_total',
    help: 'Sink operations retried after a retriable error, by sink.',
    labelNames: ['sink'],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ sink: 'clickhouse' }, clickhouse.stats.retries);
      this.inc({ sink: 'edge_rules' }, edgeRules.writer.retries);
    },
  });
  const batchSeconds = new Histogram({
    name: 'burstwatch_sink_batch_seconds',
    help: 'Duration of each successful sink batch (a ClickHouse insert, an acknowledged send to the edge-rule topic), by sink and table or topic.',
    labelNames: ['sink', 'table'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  clickhouse.onBatch = (table, _rows, seconds) => batchSeconds.observe({ sink: 'clickhouse', table }, seconds);
  edgeRules.writer.onBatch = (_n, seconds) => batchSeconds.observe({ sink: 'edge_rules', table: edgeRules.writer.spec.topic }, seconds);
  const scoring = new Histogram({
    name: 'burstwatch_detector_seconds',
    help: "Time to score one closed window of a stage-2 partition: every entity's detectors and the population forest (waiting for its fit included).",
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  stats.windows.onScored = (seconds) => scoring.observe(seconds);
  return registry;
}

/**
 * Serves `/metrics`, `/healthz` and `/readyz` on host:port. `problems` lists what keeps the
 * service from being ready (a stage not in its group yet, a sink in an outage); `/readyz`
 * answers 200 when it is empty, else 503 with one problem per line. `broken` says what has
 * stopped the service for good (a stage failed with an error retrying cannot fix); `/healthz`
 * answers 503 with it, so a liveness probe restarts the process.
 */
export async function serveMetrics(
  registry: Registry,
  host: string,
  port: number,
  problems: () => string[],
  broken: () => string | null = () => null,
): Promise<Server> {
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
      const why = broken();
      res.writeHead(why === null ? 200 : 503).end(why === null ? 'ok\n' : `failed: ${why}\n`);
    } else if (req.url === '/readyz') {
      const why = problems();
      res.writeHead(why.length === 0 ? 200 : 503).end(why.length === 0 ? 'ready\n' : `not ready:\n${why.map((w) => `- ${w}\n`).join('')}`);
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
