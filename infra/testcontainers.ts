/**
 * Optional Docker path: the same services as containers, for machines that have a Docker engine
 * (CI runners, laptops). Containers belong to the calling process: testcontainers' reaper (Ryuk)
 * removes them when it exits, so this suits tests and a foreground `infra up --docker`, not a
 * long-lived background stack. testcontainers is imported lazily so the loopback path never loads it.
 */
import type { StartedClickHouseContainer as StartedClickHouse } from '@testcontainers/clickhouse';
import type { StartedKafkaContainer as StartedKafka } from '@testcontainers/kafka';
import { InfraError, errorMessage } from '../errors.js';
import type { Endpoints, ServiceName } from './endpoints.js';
import type { Progress } from './processes.js';
import { SchemaRegistryServer } from './schema-registry.js';

/**
 * Kafka image: Confluent Platform 7.9 ships Kafka 3.9. CP 8.x ships Kafka 4, which dropped the old
 * protocol versions kafkajs 2.2.4 speaks (KIP-896).
 */
export const DOCKER_KAFKA_IMAGE = 'confluentinc/cp-kafka:7.9.0';

/** ClickHouse image: a current LTS line, closer to production than Debian's 18.16. */
export const DOCKER_CLICKHOUSE_IMAGE = 'clickhouse/clickhouse-server:24.8';

/** Port the testcontainers Kafka module exposes for clients outside Docker. */
const KAFKA_CLIENT_PORT = 9093;

/** Whether a container engine answers, probed for at most `timeoutMs` (default 5000); `reason` says why not. */
export async function dockerAvailable(timeoutMs = 5_000): Promise<{ ok: boolean; reason?: string }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer from a container runtime within ${timeoutMs} ms`)), timeoutMs);
      timer.unref();
    });
    await Promise.race([getContainerRuntimeClient(), timeout]);
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: errorMessage(err) };
  } finally {
    if (timer) clearTimeout(timer);
  }
}

interface DockerStack {
  endpoints: Endpoints;
  stop: () => Promise<void>;
}

let stack: Promise<DockerStack> | undefined;

/**
 * Starts Kafka and ClickHouse containers (and an in-process schema registry on a free port, stored
 * in that Kafka) unless this process already did; returns their endpoints. Services not asked for
 * keep the `fallback` endpoint. Throws InfraError, with the reason, when no engine is reachable.
 */
export async function startDockerInfra(options: {
  services: readonly ServiceName[];
  fallback: Endpoints;
  onProgress?: Progress;
}): Promise<Endpoints> {
  stack ??= launch(options).catch((err: unknown) => {
    stack = undefined; // let a later call try again
    throw err;
  });
  return (await stack).endpoints;
}

/** Stops the containers and registry started by {@link startDockerInfra} in this process, if any. */
export async function stopDockerInfra(): Promise<void> {
  const current = stack;
  stack = undefined;
  if (current) await (await current.catch(() => undefined))?.stop();
}

async function launch(options: {
  services: readonly ServiceName[];
  fallback: Endpoints;
  onProgress?: Progress;
}): Promise<DockerStack> {
  const say = options.onProgress ?? (() => undefined);
  const docker = await dockerAvailable();
  if (!docker.ok) {
    throw new InfraError(
      `--docker was requested but no Docker engine is reachable (${docker.reason}); ` +
        'start Docker, or run without --docker to use the loopback services',
    );
  }
  const wants = (s: ServiceName): boolean => options.services.includes(s);
  const stoppers: (() => Promise<unknown>)[] = [];
  const stop = async (): Promise<void> => {
    for (const s of stoppers.reverse()) await s().catch(() => undefined);
  };
  const endpoints: Endpoints = { ...options.fallback, kafkaBrokers: [...options.fallback.kafkaBrokers] };
  try {
    const [{ KafkaContainer }, { ClickHouseContainer }] = await Promise.all([
      import('@testcontainers/kafka'),
      import('@testcontainers/clickhouse'),
    ]);
    const startKafka = async (): Promise<StartedKafka> => {
      say(`docker: starting ${DOCKER_KAFKA_IMAGE}`);
      return new KafkaContainer(DOCKER_KAFKA_IMAGE).withKraft().start();
    };
    const startClickHouse = async (): Promise<StartedClickHouse> => {
      say(`docker: starting ${DOCKER_CLICKHOUSE_IMAGE}`);
      return new ClickHouseContainer(DOCKER_CLICKHOUSE_IMAGE).start();
    };
    const [kafka, clickhouse] = await Promise.all([
      wants('kafka') || wants('registry') ? startKafka() : undefined,
      wants('clickhouse') ? startClickHouse() : undefined,
    ]);
    if (kafka) {
      stoppers.push(() => kafka.stop());
      endpoints.kafkaBrokers = [`${kafka.getHost()}:${kafka.getMappedPort(KAFKA_CLIENT_PORT)}`];
    }
    if (clickhouse) {
      stoppers.push(() => clickhouse.stop());
      // Carries user, password and database: @clickhouse/client reads all three from the URL.
      endpoints.clickhouseUrl = clickhouse.getConnectionUrl();
    }
    if (wants('registry')) {
      say('docker: starting the schema registry in this process');
      // In-process rather than a child: it then dies with the containers' owner, like them.
      const registry = new SchemaRegistryServer({ brokers: endpoints.kafkaBrokers, port: 0 });
      endpoints.schemaRegistryUrl = await registry.start();
      stoppers.push(() => registry.close());
    }
  } catch (err) {
    await stop();
    throw err instanceof InfraError ? err : new InfraError(`docker infra failed: ${errorMessage(err)}`, { cause: err });
  }
  return { endpoints, stop };
}
