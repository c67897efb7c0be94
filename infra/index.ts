/**
 * `infra/` installs and runs the real services burstwatch needs — Kafka, ClickHouse and a
 * Confluent-compatible schema registry — on loopback, without Docker: Kafka from Maven Central
 * jars, ClickHouse from Debian packages, the registry from this package. Everything lives under
 * {@link stateDir}. `infraUp` is idempotent and safe to call from several processes at once.
 * With `docker: true` the same services run as testcontainers instead.
 */
import { InfraError, errorMessage } from '../errors.js';
import { clickhouseStatus, startClickHouse, stopClickHouse } from './clickhouse.js';
import {
  endpointsFor,
  localPorts,
  SERVICE_NAMES,
  type Endpoints,
  type LocalPorts,
  type ServiceName,
  type ServiceStatus,
} from './endpoints.js';
import { kafkaStatus, startKafka, stopKafka } from './kafka.js';
import { withInfraLock } from './lock.js';
import type { Progress } from './processes.js';
import { registryStatus, startRegistry, stopRegistry } from './schema-registry.js';
import { startDockerInfra, stopDockerInfra } from './testcontainers.js';

export type { Endpoints, LocalPorts, ServiceName, ServiceStatus } from './endpoints.js';
export { SERVICE_NAMES, localPorts } from './endpoints.js';
export { packageRoot, stateDir } from './paths.js';
export type { Progress } from './processes.js';
export { dockerAvailable } from './testcontainers.js';
export { SchemaRegistryServer, type SchemaRegistryOptions } from './schema-registry.js';

/**
 * Endpoints of the loopback services: 127.0.0.1:19092, http://127.0.0.1:18123 and
 * http://127.0.0.1:18081, or the `BURSTWATCH_*_PORT` overrides set when this module loaded.
 * Prefer the value `infraUp` returns, which is always the effective one.
 */
export const localEndpoints: Endpoints = endpointsFor(portsOrDefaults());

function portsOrDefaults(): LocalPorts {
  try {
    return localPorts();
  } catch {
    // A bad override must not break importing this module; infraUp reports it as a ConfigError.
    return localPorts({});
  }
}

/** Options of {@link infraUp}. */
export interface InfraUpOptions {
  /** Services to start. Default all; `registry` brings `kafka` along, which stores its schemas. */
  services?: ServiceName[];
  /** Run the services as testcontainers (needs a Docker engine) instead of on loopback. Default false. */
  docker?: boolean;
  /** Receives progress lines (installing, waiting); nothing is printed otherwise. */
  onProgress?: Progress;
}

/** Options of {@link infraDown}. */
export interface InfraDownOptions {
  /** Services to stop. Default all; stopping `kafka` also stops the `registry` that needs it. */
  services?: ServiceName[];
  /** Stop the containers this process started with `infraUp({ docker: true })` instead. Default false. */
  docker?: boolean;
  /** Receives progress lines. */
  onProgress?: Progress;
}

/**
 * Installs what is missing and starts the requested services, then resolves to their endpoints once
 * each one answers its protocol. Returns quickly when everything is already up. Holds an exclusive
 * lock while starting, so concurrent callers (other processes, other test workers) wait and then
 * find the services running rather than starting a second copy.
 */
export async function infraUp(options: InfraUpOptions = {}): Promise<Endpoints> {
  const ports = localPorts();
  const endpoints = endpointsFor(ports);
  const services = new Set(options.services ?? SERVICE_NAMES);
  if (services.has('registry')) services.add('kafka');
  const say = options.onProgress;
  if (options.docker) {
    return startDockerInfra({ services: [...services], fallback: endpoints, ...(say ? { onProgress: say } : {}) });
  }

  // Fast path without the lock: the usual case in a test suite is that everything already runs.
  const before = await Promise.all([...services].map((s) => statusOf(s, ports)));
  if (before.every((s) => s.ready && s.endpoint === wantedEndpoint(s.name, endpoints))) return endpoints;

  return withInfraLock(
    async () => {
      const common = say ? { ports, onProgress: say } : { ports };
      // Kafka and ClickHouse do not depend on each other; starting both at once halves a cold start.
      const results = await Promise.allSettled([
        services.has('kafka') ? startKafka(common) : undefined,
        services.has('clickhouse') ? startClickHouse(common) : undefined,
      ]);
      const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
      if (failures.length === 1) throw failures[0];
      if (failures.length > 1) {
        throw new InfraError(failures.map((f) => errorMessage(f)).join('\n\n'), { cause: failures[0] });
      }
      if (services.has('registry')) await startRegistry({ ...common, brokers: endpoints.kafkaBrokers });
      return endpoints;
    },
    say ? { onProgress: say } : {},
  );
}

/**
 * Stops the requested services (default all) that `infraUp` started, registry first. Stopping what
 * is not running is not an error. Data is kept; the next `infraUp` starts where this left off.
 */
export async function infraDown(options: InfraDownOptions = {}): Promise<void> {
  if (options.docker) return stopDockerInfra();
  const services = new Set(options.services ?? SERVICE_NAMES);
  if (services.has('kafka')) services.add('registry');
  const say = options.onProgress;
  await withInfraLock(
    async () => {
      if (services.has('registry')) await stopRegistry(say);
      const results = await Promise.allSettled([
        services.has('kafka') ? stopKafka(say) : undefined,
        services.has('clickhouse') ? stopClickHouse(say) : undefined,
      ]);
      const failure = results.find((r) => r.status === 'rejected');
      if (failure) throw failure.reason;
    },
    say ? { onProgress: say } : {},
  );
}

/** Status of every loopback service (in {@link SERVICE_NAMES} order). Takes no lock and changes nothing. */
export async function infraStatus(): Promise<ServiceStatus[]> {
  const ports = localPorts();
  return Promise.all(SERVICE_NAMES.map((s) => statusOf(s, ports)));
}

function statusOf(service: ServiceName, ports: LocalPorts): Promise<ServiceStatus> {
  switch (service) {
    case 'kafka':
      return kafkaStatus(ports);
    case 'clickhouse':
      return clickhouseStatus(ports);
    case 'registry':
      return registryStatus(ports);
  }
}

function wantedEndpoint(service: ServiceName, endpoints: Endpoints): string {
  switch (service) {
    case 'kafka':
      return endpoints.kafkaBrokers[0] ?? '';
    case 'clickhouse':
      return endpoints.clickhouseUrl;
    case 'registry':
      return endpoints.schemaRegistryUrl;
  }
}
