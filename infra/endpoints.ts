import { ConfigError } from '../errors.js';

/** The services `infra/` can run. `registry` depends on `kafka` (it stores schemas in a topic). */
export type ServiceName = 'kafka' | 'clickhouse' | 'registry';

/** Every service, in start order (the registry last because it needs Kafka). */
export const SERVICE_NAMES: readonly ServiceName[] = ['kafka', 'clickhouse', 'registry'];

/** Where the pipeline finds its services. */
export interface Endpoints {
  /** Kafka bootstrap servers as `host:port`. */
  kafkaBrokers: string[];
  /** ClickHouse HTTP interface URL (may carry `user:password@` for container runs). */
  clickhouseUrl: string;
  /** Confluent-compatible schema registry base URL. */
  schemaRegistryUrl: string;
}

/** One service as `infra status` reports it. */
export interface ServiceStatus {
  name: ServiceName;
  /** A process started by `infra up` is alive (its pid file points at it). */
  running: boolean;
  /** The service answers its protocol (Kafka metadata, ClickHouse `SELECT version()`, registry HTTP). */
  ready: boolean;
  pid?: number;
  /** Server version, when it can be read. */
  version?: string;
  /** `host:port` for Kafka, a URL for the others. */
  endpoint: string;
  /** Main log file of the service. */
  logFile: string;
  /** Why the service is not usable, when that is known (e.g. a foreign process holds the port). */
  note?: string;
}

/** Loopback ports of the local services. */
export interface LocalPorts {
  /** Kafka PLAINTEXT listener. Default 19092, env `BURSTWATCH_KAFKA_PORT`. */
  kafka: number;
  /** Kafka KRaft controller listener. Default 19093, env `BURSTWATCH_KAFKA_CONTROLLER_PORT`. */
  kafkaController: number;
  /** ClickHouse HTTP. Default 18123, env `BURSTWATCH_CLICKHOUSE_HTTP_PORT`. */
  clickhouseHttp: number;
  /** ClickHouse native TCP. Default 19000, env `BURSTWATCH_CLICKHOUSE_TCP_PORT`. */
  clickhouseTcp: number;
  /** Schema registry HTTP. Default 18081, env `BURSTWATCH_REGISTRY_PORT`. */
  registry: number;
}

/** Loopback only: these services have no authentication, so they must not face the network. */
export const LOCAL_HOST = '127.0.0.1';

// Ports sit above the services' usual ones (9092, 8123, 8081) so a developer's own Kafka or
// ClickHouse on the standard ports does not collide with ours.
const DEFAULT_PORTS: LocalPorts = {
  kafka: 19092,
  kafkaController: 19093,
  clickhouseHttp: 18123,
  clickhouseTcp: 19000,
  registry: 18081,
};

const PORT_ENV: Record<keyof LocalPorts, string> = {
  kafka: 'BURSTWATCH_KAFKA_PORT',
  kafkaController: 'BURSTWATCH_KAFKA_CONTROLLER_PORT',
  clickhouseHttp: 'BURSTWATCH_CLICKHOUSE_HTTP_PORT',
  clickhouseTcp: 'BURSTWATCH_CLICKHOUSE_TCP_PORT',
  registry: 'BURSTWATCH_REGISTRY_PORT',
};

/** The configured local ports: defaults overridden by `BURSTWATCH_*_PORT` env variables. */
export function localPorts(env: NodeJS.ProcessEnv = process.env): LocalPorts {
  const ports = { ...DEFAULT_PORTS };
  for (const key of Object.keys(PORT_ENV) as (keyof LocalPorts)[]) {
    const raw = env[PORT_ENV[key]];
    if (raw === undefined || raw === '') continue;
    const port = Number(raw);
    if (!Number.isInteger(port) || port < 1 || port > 65_535) {
      throw new ConfigError(PORT_ENV[key], `must be a TCP port 1..65535, got "${raw}"`);
    }
    ports[key] = port;
  }
  const values = Object.values(ports);
  if (new Set(values).size !== values.length) {
    throw new ConfigError('BURSTWATCH_*_PORT', `local service ports must differ, got ${JSON.stringify(ports)}`);
  }
  return ports;
}

/** The endpoints of services run on loopback with `ports`. */
export function endpointsFor(ports: LocalPorts): Endpoints {
  return {
    kafkaBrokers: [`${LOCAL_HOST}:${ports.kafka}`],
    clickhouseUrl: `http://${LOCAL_HOST}:${ports.clickhouseHttp}`,
    schemaRegistryUrl: `http://${LOCAL_HOST}:${ports.registry}`,
  };
}
