/**
 * A private single-node Kafka for fault tests that need a broker of their own: plaintext, in a
 * temporary directory on free ports, advertising `advertisedPort` to clients so that every
 * connection, including those kafkajs opens from metadata, can go through a proxy the test
 * controls. The jars are those of `burstwatch infra`; never the shared broker.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { kafkaPaths } from '../../infra/kafka.js';
import { run, spawnDetached, stopProcess, waitReady, watchExit } from '../../infra/processes.js';
import { freePort } from './secure-services.js';

export interface PrivateKafka {
  /** Where the broker listens, `127.0.0.1:<port>` (what a proxy forwards to). */
  listener: string;
  /** What it advertises: `127.0.0.1:<advertisedPort>`. */
  brokers: string[];
  logFile: string;
  /** Stops the broker (SIGTERM, SIGKILL after 10 s). */
  stop(): Promise<void>;
}

/**
 * Starts the broker and waits until it answers on the advertised port: something must listen
 * there and forward to the listener, which `onListener` learns before the broker starts.
 */
export async function startPrivateKafka(options: { dir: string; advertisedPort: number; onListener: (port: number) => void }): Promise<PrivateKafka> {
  const { dir, advertisedPort } = options;
  mkdirSync(join(dir, 'data'), { recursive: true });
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const [port, controllerPort] = [await freePort(), await freePort()];
  options.onListener(port);
  const props = join(dir, 'server.properties');
  const log4j = join(dir, 'log4j.properties');
  const logFile = join(dir, 'logs', 'server.log');
  const consoleLog = join(dir, 'logs', 'console.log');
  writeFileSync(
    props,
    [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
      `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
      `advertised.listeners=PLAINTEXT://127.0.0.1:${advertisedPort}`,
      'controller.listener.names=CONTROLLER',
      'inter.broker.listener.name=PLAINTEXT',
      'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
      `log.dirs=${join(dir, 'data')}`,
      'num.partitions=1',
      'offsets.topic.replication.factor=1',
      'transaction.state.log.replication.factor=1',
      'transaction.state.log.min.isr=1',
      'group.initial.rebalance.delay.ms=0',
      '',
    ].join('\n'),
  );
  writeFileSync(
    log4j,
    [
      'log4j.rootLogger=WARN, file',
      'log4j.appender.file=org.apache.log4j.FileAppender',
      `log4j.appender.file.File=${logFile}`,
      'log4j.appender.file.layout=org.apache.log4j.PatternLayout',
      'log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n',
      'log4j.logger.kafka.server.KafkaRaftServer=INFO',
      '',
    ].join('\n'),
  );
  const javaBin = process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
  const java = ['-Dlog4j.configuration=file:' + log4j, '-cp', `${kafkaPaths().libs}/*`];
  const { stdout } = await run(javaBin, [...java, 'kafka.tools.StorageTool', 'random-uuid']);
  const clusterId = stdout.trim().split('\n').pop()?.trim() ?? '';
  await run(javaBin, [...java, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', props]);
  const child = spawnDetached(javaBin, ['-Xmx512m', '-XX:+ExitOnOutOfMemoryError', '-Djava.awt.headless=true', ...java, 'kafka.Kafka', props], {
    cwd: dir,
    logFile: consoleLog,
  });
  const exited = watchExit(child);
  if (child.pid === undefined) throw new Error(`could not start java; see ${consoleLog}`);
  const pid = child.pid;
  const stop = async (): Promise<void> => {
    await stopProcess(pid, ['kafka.Kafka', props], 10_000).catch(() => undefined);
  };
  process.once('exit', () => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  });
  const brokers = [`127.0.0.1:${advertisedPort}`];
  try {
    await waitReady({
      what: 'private kafka',
      probe: async () => {
        const admin = new Kafka({ clientId: 'it-private', brokers, logLevel: logLevel.NOTHING, retry: { retries: 0 }, connectionTimeout: 1_000 }).admin();
        try {
          await admin.connect();
          const cluster = await admin.describeCluster();
          if (cluster.controller === null) return undefined;
          await admin.describeGroups(['it-private-warmup']);
          return true;
        } catch {
          return undefined;
        } finally {
          await admin.disconnect().catch(() => undefined);
        }
      },
      timeoutMs: 90_000,
      exited,
      logFiles: [logFile, consoleLog],
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { listener: `127.0.0.1:${port}`, brokers, logFile, stop };
}
