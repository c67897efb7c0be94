import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, errorMessage } from '../errors.js';
import { SERVICE_NAMES, type Endpoints, type ServiceName, type ServiceStatus } from './endpoints.js';
import { infraDown, infraStatus, infraUp } from './index.js';

/** Exit code of `infra status` when a service is not ready (as `systemctl status` does for inactive units). */
export const EXIT_NOT_READY = 3;

function parseServices(value: string): ServiceName[] {
  const names = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (names.length === 0) throw new InvalidArgumentError(`expected a list such as kafka,clickhouse`);
  for (const name of names) {
    if (!(SERVICE_NAMES as readonly string[]).includes(name)) {
      throw new InvalidArgumentError(`unknown service "${name}"; choose from ${SERVICE_NAMES.join(', ')}`);
    }
  }
  return names as ServiceName[];
}

// Progress goes to stderr so stdout carries only the result (a table, endpoints, JSON) and stays
// pipeable; it is still what a person watching the terminal sees.
const progress = (message: string): void => {
  process.stderr.write(`  ${message}\n`);
};

/**
 * Runs a subcommand, turning a failure into a message on stderr and exit code 1, or 2 for a
 * configuration error (as cli/main.ts does), without a stack trace.
 */
async function guarded(name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    let text = `burstwatch infra ${name}: ${errorMessage(err)}`;
    const cause = err instanceof Error ? err.cause : undefined;
    if (cause !== undefined && !text.includes(errorMessage(cause))) text += `\n  cause: ${errorMessage(cause)}`;
    process.stderr.write(`${text}\n`);
    process.exitCode = err instanceof ConfigError ? 2 : 1;
  }
}

function stateOf(s: ServiceStatus): string {
  if (s.ready) return 'ready';
  if (s.running) return 'not ready';
  return 'stopped';
}

/** Renders statuses as an aligned plain-text table, with any notes on lines below it. */
export function formatStatusTable(statuses: readonly ServiceStatus[]): string {
  const header = ['SERVICE', 'STATE', 'PID', 'VERSION', 'ENDPOINT', 'LOG'];
  const rows = statuses.map((s) => [s.name, stateOf(s), s.pid?.toString() ?? '-', s.version ?? '-', s.endpoint, s.logFile]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const notes = statuses.filter((s) => s.note).map((s) => `note: ${s.name}: ${s.note}`);
  return [line(header), ...rows.map(line), ...notes].join('\n') + '\n';
}

function formatEndpoints(endpoints: Endpoints): string {
  return (
    [
      `kafka brokers     ${endpoints.kafkaBrokers.join(',')}`,
      `clickhouse url    ${endpoints.clickhouseUrl}`,
      `schema registry   ${endpoints.schemaRegistryUrl}`,
    ].join('\n') + '\n'
  );
}

/**
 * The `infra` command group (`up`, `down`, `status`), to be mounted as `burstwatch infra`.
 * Actions are async, so the program must be run with `parseAsync`.
 */
export function infraCommand(): Command {
  const infra = new Command('infra')
    .description(
      'Install and run the services burstwatch needs (Kafka 3.9, ClickHouse, a Confluent-compatible schema registry) ' +
        'on 127.0.0.1, without Docker',
    )
    .addHelpText(
      'after',
      `
Services and default endpoints:
  kafka        127.0.0.1:19092          (controller 19093)   Maven Central jars, needs Java 11+ and Maven
  clickhouse   http://127.0.0.1:18123   (native 19000)       Debian package clickhouse-server
  registry     http://127.0.0.1:18081                        built in; stores schemas in Kafka topic _schemas

Missing Java, Maven and ClickHouse are installed with apt-get when running as root.
Jars, data, logs and pid files live in $BURSTWATCH_HOME, default <package>/.burstwatch.
Ports can be moved with BURSTWATCH_KAFKA_PORT, BURSTWATCH_KAFKA_CONTROLLER_PORT,
BURSTWATCH_CLICKHOUSE_HTTP_PORT, BURSTWATCH_CLICKHOUSE_TCP_PORT and BURSTWATCH_REGISTRY_PORT.`,
    );

  infra
    .command('up')
    .description(
      'Install what is missing, start the services in the background and wait until each one answers. ' +
        'Safe to re-run: services already up are left alone, and concurrent runs wait for each other.',
    )
    .option(
      '--docker',
      'run the services as Docker containers (testcontainers) instead; they live until this command ends (Ctrl-C)',
    )
    .option(
      '--only <services>',
      `comma-separated subset of ${SERVICE_NAMES.join(',')} (registry also starts kafka)`,
      parseServices,
    )
    .action((options: { docker?: boolean; only?: ServiceName[] }) =>
      guarded('up', async () => {
        const started = Date.now();
        const services = options.only ?? [...SERVICE_NAMES];
        if (options.docker) {
          const endpoints = await infraUp({ services, docker: true, onProgress: progress });
          process.stdout.write(formatEndpoints(endpoints));
          progress('containers run until this command ends; press Ctrl-C to stop them');
          await new Promise<void>((resolve) => {
            process.once('SIGINT', resolve);
            process.once('SIGTERM', resolve);
          });
          progress('stopping containers');
          await infraDown({ docker: true });
          return;
        }
        await infraUp({ services, onProgress: progress });
        const statuses = (await infraStatus()).filter((s) => services.includes(s.name) || s.running);
        process.stdout.write(formatStatusTable(statuses));
        process.stdout.write(`up in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
      }),
    );

  infra
    .command('down')
    .description(
      'Stop the services that `infra up` started (SIGTERM, then SIGKILL after 20 s). Data and installed ' +
        'files are kept, so the next `up` is quick; delete the state directory to start from scratch.',
    )
    .option(
      '--only <services>',
      `comma-separated subset of ${SERVICE_NAMES.join(',')} (stopping kafka also stops registry)`,
      parseServices,
    )
    .action((options: { only?: ServiceName[] }) =>
      guarded('down', async () => {
        await infraDown({ ...(options.only ? { services: options.only } : {}), onProgress: progress });
        process.stdout.write(formatStatusTable(await infraStatus()));
      }),
    );

  infra
    .command('status')
    .description(
      `Show whether each service runs and answers, with pid, version, endpoint and log file. ` +
        `Exits 0 when all are ready, ${EXIT_NOT_READY} otherwise.`,
    )
    .option('--json', 'print the statuses as a JSON array instead of a table')
    .action((options: { json?: boolean }) =>
      guarded('status', async () => {
        const statuses = await infraStatus();
        process.stdout.write(options.json ? `${JSON.stringify(statuses, null, 2)}\n` : formatStatusTable(statuses));
        if (!statuses.every((s) => s.ready)) process.exitCode = EXIT_NOT_READY;
      }),
    );

  return infra;
}
