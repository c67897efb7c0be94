/**
 * A single-node Kafka (KRaft, broker and controller in one JVM) on loopback, run from the jars on
 * Maven Central, so neither Docker nor the Apache download mirrors are needed.
 *
 * Version: 3.9.1, the last 3.x release. kafkajs 2.2.4 speaks old request versions that Kafka 4.0
 * removed (KIP-896), so 3.9.x is the newest broker kafkajs works against.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { InfraError, errorMessage } from '../errors.js';
import { logger } from '../logger.js';
import { aptInstall } from './apt.js';
import { LOCAL_HOST, type LocalPorts, type ServiceStatus } from './endpoints.js';
import { packageRoot, serviceDir } from './paths.js';
import {
  assertPortsFree,
  ownedPid,
  readText,
  removeFile,
  run,
  spawnDetached,
  stopProcess,
  waitReady,
  watchExit,
  which,
  writePidFile,
  type Progress, describeService, resumeRunning, stopService } from './processes.js';

/** Kafka release run by `infra` (must match infra/kafka/pom.xml). */
export const KAFKA_VERSION = '3.9.1';

/** Oldest Java that Kafka 3.9 brokers run on. */
const MIN_JAVA = 11;

/** Broker heap, passed as -Xmx. A test broker needs little, and ClickHouse shares the machine. */
const HEAP = '512m';

/** Longest a jar download may take, ms (46 MB, generous for slow links). */
const MVN_TIMEOUT_MS = 20 * 60_000;

/** Default time to wait for a started broker to answer metadata requests, ms. */
export const KAFKA_READY_TIMEOUT_MS = 120_000;

/** Files of the local broker under `<stateDir>/kafka`. */
export interface KafkaPaths {
  dir: string;
  libs: string;
  data: string;
  serverProperties: string;
  log4jProperties: string;
  pidFile: string;
  endpointFile: string;
  /** log4j output (WARN and up, plus start/stop lines). */
  logFile: string;
  /** The JVM's own stdout/stderr: crashes before log4j is up land here. */
  consoleLog: string;
  /** Holds the cluster id once the storage is formatted. */
  clusterIdFile: string;
}

/** Paths of the local broker's files. */
export function kafkaPaths(): KafkaPaths {
  const dir = serviceDir('kafka');
  return {
    dir,
    libs: join(dir, 'libs'),
    data: join(dir, 'data'),
    serverProperties: join(dir, 'server.properties'),
    log4jProperties: join(dir, 'log4j.properties'),
    pidFile: join(dir, 'kafka.pid'),
    endpointFile: join(dir, 'kafka.endpoint'),
    logFile: join(dir, 'logs', 'server.log'),
    consoleLog: join(dir, 'logs', 'console.log'),
    clusterIdFile: join(dir, 'cluster-id'),
  };
}

// Both must appear in the command line of a process before we trust or signal it as our broker.
const markers = (paths: KafkaPaths): string[] => ['kafka.Kafka', paths.serverProperties];

/** Whether a Kafka cluster answers a metadata request at `brokers` within `timeoutMs` (default 2000). */
export async function kafkaReady(brokers: string[], timeoutMs = 2_000): Promise<boolean> {
  const kafka = new Kafka({
    clientId: 'burstwatch-infra-probe',
    brokers,
    connectionTimeout: Math.min(timeoutMs, 1_000),
    requestTimeout: timeoutMs,
    retry: { retries: 0 },
    logLevel: logLevel.NOTHING,
  });
  const admin = kafka.admin();
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    return cluster.brokers.length > 0 && cluster.controller !== null;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** State of the local broker: ours and alive (`running`), answering (`ready`), on which endpoint. */
export async function kafkaStatus(ports: LocalPorts): Promise<ServiceStatus> {
  const paths = kafkaPaths();
  const pid = ownedPid(paths.pidFile, markers(paths));
  const wanted = `${LOCAL_HOST}:${ports.kafka}`;
  const endpoint = (pid !== undefined ? readText(paths.endpointFile) : undefined) ?? wanted;
  const ready = pid !== undefined && (await kafkaReady([endpoint]));
  return describeService({ name: 'kafka', pid, endpoint, ready, version: installedVersion(paths), logFile: paths.logFile, port: ports.kafka });
}

/**
 * Starts the local broker unless it already runs: installs Java and Maven with apt-get if missing,
 * resolves the Kafka jars, formats the KRaft storage once, starts the JVM detached and waits up to
 * `timeoutMs` (default 120 s) until it answers metadata requests.
 */
export async function startKafka(options: {
  ports: LocalPorts;
  onProgress?: Progress;
  timeoutMs?: number;
}): Promise<ServiceStatus> {
  const { ports } = options;
  const say = options.onProgress ?? (() => undefined);
  const paths = kafkaPaths();
  const brokers = [`${LOCAL_HOST}:${ports.kafka}`];
  const current = await kafkaStatus(ports);
  const resumed = await resumeRunning({
    current,
    wanted: brokers[0] as string,
    probe: () => kafkaReady(brokers),
    status: () => kafkaStatus(ports),
    timeoutMs: options.timeoutMs ?? KAFKA_READY_TIMEOUT_MS,
    logFiles: [paths.logFile, paths.consoleLog],
    onProgress: say,
  });
  if (resumed) return resumed;

  await assertPortsFree(
    [
      { port: ports.kafka, env: 'BURSTWATCH_KAFKA_PORT' },
      { port: ports.kafkaController, env: 'BURSTWATCH_KAFKA_CONTROLLER_PORT' },
    ],
    'kafka',
  );
  mkdirSync(join(paths.dir, 'logs'), { recursive: true });
  mkdirSync(paths.data, { recursive: true });
  const java = await ensureJava(say);
  await ensureJars(paths, say);
  writeFileSync(paths.serverProperties, serverProperties(paths, ports));
  writeFileSync(paths.log4jProperties, log4jProperties(paths));
  await formatStorage(java, paths, say);

  say(`kafka: starting broker ${KAFKA_VERSION} on ${brokers[0]}`);
  const child = spawnDetached(
    java,
    [
      `-Xmx${HEAP}`,
      '-XX:+ExitOnOutOfMemoryError',
      '-Djava.awt.headless=true',
      `-Dlog4j.configuration=file:${paths.log4jProperties}`,
      `-Dkafka.logs.dir=${join(paths.dir, 'logs')}`,
      '-cp',
      // The JVM expands `dir/*` to every jar in dir itself; no shell is involved.
      `${paths.libs}/*`,
      'kafka.Kafka',
      paths.serverProperties,
    ],
    { cwd: paths.dir, logFile: paths.consoleLog },
  );
  const exited = watchExit(child);
  if (child.pid === undefined) {
    throw new InfraError(`could not start ${java}; see ${paths.consoleLog}`);
  }
  writePidFile(paths.pidFile, child.pid);
  writeFileSync(paths.endpointFile, `${brokers[0]}\n`);
  try {
    await waitReady({
      what: 'kafka',
      probe: async () => ((await kafkaReady(brokers)) ? true : undefined),
      timeoutMs: options.timeoutMs ?? KAFKA_READY_TIMEOUT_MS,
      exited,
      logFiles: [paths.logFile, paths.consoleLog],
      onProgress: say,
    });
  } catch (err) {
    // Leave no half-started broker behind: the next `up` should start from a clean slate.
    await stopProcess(child.pid, markers(paths), 5_000).catch(() => undefined);
    removeFile(paths.pidFile);
    removeFile(paths.endpointFile);
    throw err;
  }
  await warmGroupCoordinator(brokers, say);
  logger.debug({ pid: child.pid, brokers }, 'kafka started');
  return kafkaStatus(ports);
}

/**
 * Makes the broker create `__consumer_offsets` now. A fresh broker creates it on the first
 * FindCoordinator request, and until it has, every consumer group join fails and kafkajs restarts
 * the consumer with errors in the log; paying that once here keeps it out of the first test.
 * Best effort: the broker works without it.
 */
async function warmGroupCoordinator(brokers: string[], say: Progress): Promise<void> {
  const admin = new Kafka({ clientId: 'burstwatch-infra-warmup', brokers, logLevel: logLevel.NOTHING }).admin();
  try {
    await admin.connect();
    await admin.describeGroups(['burstwatch-infra-warmup']);
  } catch (err) {
    say(`kafka: group coordinator not ready yet (${errorMessage(err)}); consumers will wait for it`);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** Stops the local broker (SIGTERM, SIGKILL after 20 s). Resolves false if it was not running. */
export async function stopKafka(onProgress?: Progress): Promise<boolean> {
  const paths = kafkaPaths();
  return stopService('kafka', paths, markers(paths), onProgress);
}

/** The java binary to use: `$JAVA_HOME/bin/java`, else `java` on PATH, else apt's default JRE. */
async function ensureJava(say: Progress): Promise<string> {
  const fromHome = process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : undefined;
  let java = fromHome !== undefined && existsSync(fromHome) ? fromHome : which('java');
  if (java === undefined) {
    say('kafka: no Java found, installing default-jre-headless');
    await aptInstall(['default-jre-headless'], say);
    java = which('java');
    if (java === undefined) throw new InfraError('default-jre-headless installed but `java` is still not on PATH');
  }
  const { output } = await run(java, ['-version']);
  const match = /version "(\d+)(?:\.(\d+))?/.exec(output);
  const major = match ? (match[1] === '1' ? Number(match[2]) : Number(match[1])) : NaN;
  if (!(major >= MIN_JAVA)) {
    throw new InfraError(
      `Kafka ${KAFKA_VERSION} needs Java ${MIN_JAVA} or newer, but ${java} reports: ${output.split('\n')[0]}; ` +
        'set JAVA_HOME to a newer JDK/JRE',
    );
  }
  return java;
}

/**
 * Copies the jars listed by infra/kafka/pom.xml into `libs` with Maven (installing it if missing).
 * Skipped when `libs/.pom-sha256` matches the pom, so a changed pom re-resolves and an unchanged one
 * costs nothing. Resolves into a temporary directory and renames it, so an interrupted download
 * never leaves a half-filled `libs` that looks complete.
 */
async function ensureJars(paths: KafkaPaths, say: Progress): Promise<void> {
  const pom = join(packageRoot(), 'infra', 'kafka', 'pom.xml');
  if (!existsSync(pom)) throw new InfraError(`${pom} is missing; the package is incomplete`);
  const hash = createHash('sha256').update(readFileSync(pom)).digest('hex');
  const marker = join(paths.libs, '.pom-sha256');
  if (readText(marker) === hash) return;

  let mvn = which('mvn');
  if (mvn === undefined) {
    say('kafka: Maven not found, installing maven');
    await aptInstall(['maven'], say);
    mvn = which('mvn');
    if (mvn === undefined) throw new InfraError('maven installed but `mvn` is still not on PATH');
  }
  say(`kafka: resolving Kafka ${KAFKA_VERSION} jars from Maven Central (about 46 MB the first time)`);
  const staging = `${paths.libs}.tmp-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  try {
    const copy = [
      '-q',
      '-B',
      '-Dstyle.color=never',
      '-f',
      pom,
      'dependency:copy-dependencies',
      `-DoutputDirectory=${staging}`,
      '-DincludeScope=runtime',
    ];
    await run(mvn, copy, { timeoutMs: MVN_TIMEOUT_MS });
    if (!readdirSync(staging).some((f) => f.startsWith('kafka_2.13-'))) {
      throw new InfraError(`mvn finished but ${staging} holds no kafka_2.13 jar`);
    }
    writeFileSync(join(staging, '.pom-sha256'), `${hash}\n`);
    rmSync(paths.libs, { recursive: true, force: true });
    renameSync(staging, paths.libs);
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw new InfraError(
      `could not resolve the Kafka jars with Maven (is Maven Central reachable? a proxy goes in ~/.m2/settings.xml)`,
      { cause: err, retriable: true },
    );
  }
}

/** Kafka version from the jar in `libs` (e.g. `kafka_2.13-3.9.1.jar`), or undefined before install. */
function installedVersion(paths: KafkaPaths): string | undefined {
  try {
    const jar = readdirSync(paths.libs).find((f) => /^kafka_2\.13-[\d.]+\.jar$/.test(f));
    return jar?.slice('kafka_2.13-'.length, -'.jar'.length);
  } catch {
    return undefined;
  }
}

/**
 * KRaft needs its log directory formatted with a cluster id before the first start. Done once: the
 * id is kept in `cluster-id`, and `--ignore-formatted` makes a re-run after a lost marker harmless.
 */
async function formatStorage(java: string, paths: KafkaPaths, say: Progress): Promise<void> {
  if (readText(paths.clusterIdFile)) return;
  const classpath = ['-Dlog4j.configuration=file:' + paths.log4jProperties, '-cp', `${paths.libs}/*`];
  const { stdout } = await run(java, [...classpath, 'kafka.tools.StorageTool', 'random-uuid']);
  const clusterId = stdout.trim().split('\n').pop()?.trim() ?? '';
  if (!/^[A-Za-z0-9_-]{22}$/.test(clusterId)) {
    throw new InfraError(`kafka StorageTool random-uuid printed no cluster id: ${stdout.trim()}`);
  }
  say(`kafka: formatting storage in ${paths.data} (cluster id ${clusterId})`);
  await run(java, [
    ...classpath,
    'kafka.tools.StorageTool',
    'format',
    '-t',
    clusterId,
    '-c',
    paths.serverProperties,
    '--ignore-formatted',
  ]);
  writeFileSync(paths.clusterIdFile, `${clusterId}\n`);
}

function serverProperties(paths: KafkaPaths, ports: LocalPorts): string {
  return [
    '# Written by burstwatch infra on every start; edits are overwritten.',
    '# One JVM is both KRaft controller and broker, listening on loopback only.',
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@${LOCAL_HOST}:${ports.kafkaController}`,
    `listeners=PLAINTEXT://${LOCAL_HOST}:${ports.kafka},CONTROLLER://${LOCAL_HOST}:${ports.kafkaController}`,
    `advertised.listeners=PLAINTEXT://${LOCAL_HOST}:${ports.kafka}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    `log.dirs=${paths.data}`,
    'num.partitions=1',
    '# A single broker cannot hold more than one replica of the internal topics.',
    'offsets.topic.replication.factor=1',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    '# Consumer groups in tests should not sit out the default 3 s join delay.',
    'group.initial.rebalance.delay.ms=0',
    '# Kept at the default (true) for convenience, but burstwatch creates the topics it needs.',
    'auto.create.topics.enable=true',
    '',
  ].join('\n');
}

function log4jProperties(paths: KafkaPaths): string {
  return [
    '# Written by burstwatch infra. WARN keeps the log small; the server start/stop lines stay at INFO.',
    'log4j.rootLogger=WARN, file',
    'log4j.appender.file=org.apache.log4j.RollingFileAppender',
    `log4j.appender.file.File=${paths.logFile}`,
    'log4j.appender.file.MaxFileSize=10MB',
    'log4j.appender.file.MaxBackupIndex=3',
    'log4j.appender.file.layout=org.apache.log4j.PatternLayout',
    'log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n',
    'log4j.logger.kafka.server.KafkaRaftServer=INFO',
    '',
  ].join('\n');
}
