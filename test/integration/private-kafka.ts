/**
 * A private single-node Kafka for fault tests that need a broker of their own: plaintext, in a
 * temporary directory on free ports, advertising `advertisedPort` to clients so that every
 * connection, including those kafkajs opens from metadata, can go through a proxy the test
 * controls. The jars are those of `burstwatch infra`; never the shared broker.
 */
import { Kafka, logLevel } from 'kafkajs';
import { freePort, startKafkaNode } from './secure-services.js';

export interface PrivateKafka {
  /** What it advertises: `127.0.0.1:<advertisedPort>`. */
  brokers: string[];
  logFile: string;
  /** Stops the broker (SIGTERM, SIGKILL after 10 s). */
  stop(): Promise<void>;
}

/**
 * Starts the broker and waits until it answers on the advertised port: something must listen
 * there and forward to the broker's own port, which `onListener` learns before the broker starts.
 */
export async function startPrivateKafka(options: { dir: string; advertisedPort: number; onListener: (port: number) => void }): Promise<PrivateKafka> {
  const [port, controllerPort] = [await freePort(), await freePort()];
  options.onListener(port);
  const brokers = [`127.0.0.1:${options.advertisedPort}`];
  const { logFile, stop } = await startKafkaNode({
    dir: options.dir,
    what: 'private kafka',
    properties: [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
      `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
      `advertised.listeners=PLAINTEXT://127.0.0.1:${options.advertisedPort}`,
      'controller.listener.names=CONTROLLER',
      'inter.broker.listener.name=PLAINTEXT',
      'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    ],
    client: () => new Kafka({ clientId: 'it-private', brokers, logLevel: logLevel.NOTHING, retry: { retries: 0 }, connectionTimeout: 1_000 }),
  });
  return { brokers, logFile, stop };
}
