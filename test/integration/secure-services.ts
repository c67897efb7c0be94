/**
 * Private, secured instances of the services for test/integration/security.test.ts: a Kafka
 * broker with a SASL_SSL listener (SCRAM-SHA-512, StandardAuthorizer, no access without an ACL)
 * and a ClickHouse 18.16 that speaks only HTTPS to a user with a password, each in its own
 * temporary directory on free ports, never the shared ones of `burstwatch infra`. Also the ACL
 * lists that docs/security.md documents, and a runner for the live service in a child process
 * whose every output byte is kept (to look for leaked secrets).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClickHouseLogLevel, createClient } from '@clickhouse/client';
import {
  AclOperationTypes,
  AclPermissionTypes,
  AclResourceTypes,
  Kafka,
  logLevel,
  ResourcePatternTypes,
  type Admin,
  type KafkaConfig,
} from 'kafkajs';
import { usersXml } from '../../infra/clickhouse.js';
import { kafkaPaths } from '../../infra/kafka.js';
import { aptInstall } from '../../infra/apt.js';
import { run, spawnDetached, stopProcess, waitReady, watchExit, which } from '../../infra/processes.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** A private CA and one certificate signed by it for `127.0.0.1` and `localhost` (server and client use). */
export interface Certificates {
  /** The CA certificate (PEM): what clients trust. */
  caFile: string;
  /** The server certificate (PEM), subject `CN=localhost`. */
  certFile: string;
  /** Its private key (PEM, PKCS#8, unencrypted). */
  keyFile: string;
  /** Key, certificate and CA in one PEM file: Kafka's `ssl.keystore.type=PEM` keystore. */
  keystoreFile: string;
}

/** Makes the CA and the server certificate with `openssl` in `dir` (valid 2 days); installs openssl (apt) on a machine without it. */
export async function makeCertificates(dir: string): Promise<Certificates> {
  if (!which('openssl')) await aptInstall(['openssl']);
  mkdirSync(dir, { recursive: true });
  const f = (name: string): string => join(dir, name);
  await run('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=burstwatch-test-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout', f('ca.key'), '-out', f('ca.pem'),
  ]);
  await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', f('server.key'), '-out', f('server.csr')]);
  writeFileSync(
    f('server.ext'),
    // clientAuth too: the broker presents the same certificate to its own controller listener (mutual TLS).
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n',
  );
  await run('openssl', [
    'x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2',
    '-extfile', f('server.ext'), '-out', f('server.pem'),
  ]);
  const keystore = ['server.key', 'server.pem', 'ca.pem'].map((name) => readFileSync(f(name), 'utf8')).join('');
  writeFileSync(f('server-keystore.pem'), keystore, { mode: 0o600 });
  return { caFile: f('ca.pem'), certFile: f('server.pem'), keyFile: f('server.key'), keystoreFile: f('server-keystore.pem') };
}

/** A TCP port free on 127.0.0.1 now (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Processes started here, killed when this process exits however it exits (a last resort after `stop()`). */
const started = new Set<number>();
process.once('exit', () => {
  for (const pid of started) {
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, 'SIGKILL'); // the process group of a detached server, else the process
        break;
      } catch {
        // not a group leader, or already gone
      }
    }
  }
});

/** A private secured broker. */
export interface SecureKafka {
  /** The SASL_SSL listener, `127.0.0.1:<port>`. */
  brokers: string[];
  /** A kafkajs client for `username` over SASL_SSL (SCRAM-SHA-512), trusting the test CA. */
  client(username: string, password: string, options?: Partial<KafkaConfig>): Kafka;
  /** The super user's client. */
  admin(): Kafka;
  logFile: string;
  /** Kills the broker (SIGTERM, SIGKILL after 10 s). */
  stop(): Promise<void>;
}

/**
 * Starts a single-node KRaft Kafka (broker and controller in one JVM, the jars of `burstwatch
 * infra`) in `dir` with `properties` (plus log dirs and single-node replication settings),
 * formats its storage (`formatArgs` added), and waits until `client()`'s admin sees a
 * controller. Shared by the secured broker here and the plaintext one of private-kafka.ts.
 */
export async function startKafkaNode(o: {
  dir: string;
  what: string;
  properties: string[];
  log4j?: string[];
  formatArgs?: string[];
  client: () => Kafka;
}): Promise<{ logFile: string; stop: () => Promise<void> }> {
  const { dir } = o;
  mkdirSync(join(dir, 'data'), { recursive: true });
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const props = join(dir, 'server.properties');
  const log4j = join(dir, 'log4j.properties');
  const logFile = join(dir, 'logs', 'server.log');
  const consoleLog = join(dir, 'logs', 'console.log');
  writeFileSync(
    props,
    [
      ...o.properties,
      `log.dirs=${join(dir, 'data')}`,
      'num.partitions=1',
      'offsets.topic.replication.factor=1',
      'transaction.state.log.replication.factor=1',
      'transaction.state.log.min.isr=1',
      'group.initial.rebalance.delay.ms=0',
      '',
    ].join('\n'),
    { mode: 0o600 },
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
      ...(o.log4j ?? []),
      '',
    ].join('\n'),
  );
  const javaBin = process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
  const java = ['-Dlog4j.configuration=file:' + log4j, '-cp', `${kafkaPaths().libs}/*`];
  const { stdout } = await run(javaBin, [...java, 'kafka.tools.StorageTool', 'random-uuid']);
  const clusterId = stdout.trim().split('\n').pop()?.trim() ?? '';
  await run(javaBin, [...java, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', props, ...(o.formatArgs ?? [])]);
  const child = spawnDetached(javaBin, ['-Xmx512m', '-XX:+ExitOnOutOfMemoryError', '-Djava.awt.headless=true', ...java, 'kafka.Kafka', props], {
    cwd: dir,
    logFile: consoleLog,
  });
  const exited = watchExit(child);
  if (child.pid === undefined) throw new Error(`could not start java; see ${consoleLog}`);
  const pid = child.pid;
  started.add(pid);
  const stop = async (): Promise<void> => {
    await stopProcess(pid, ['kafka.Kafka', props], 10_000).catch(() => undefined);
    started.delete(pid);
  };
  try {
    await waitReady({
      what: o.what,
      probe: async () => {
        const admin = o.client().admin();
        try {
          await admin.connect();
          const cluster = await admin.describeCluster();
          if (cluster.controller === null) return undefined;
          // Makes the broker create __consumer_offsets now rather than at the first group join.
          await admin.describeGroups(['it-kafka-warmup']);
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
  return { logFile, stop };
}

/** The super user of the private broker. */
export const KAFKA_SUPER_USER = 'admin';

/**
 * Starts a single-node KRaft Kafka (broker and controller in one JVM, the jars of `burstwatch
 * infra`) in `dir`. Clients get one SASL_SSL listener with SCRAM-SHA-512; the controller listener
 * is TLS with client certificates, the broker authenticating with its server certificate
 * (principal `CN=localhost`). `users` are created as SCRAM credentials when the storage is
 * formatted; `admin` must be among them and is the only super user besides the broker itself.
 */
export async function startSecureKafka(options: { dir: string; certs: Certificates; users: Record<string, string> }): Promise<SecureKafka> {
  const { dir, certs, users } = options;
  const adminPassword = users[KAFKA_SUPER_USER];
  if (adminPassword === undefined) throw new Error(`users must include ${KAFKA_SUPER_USER}`);
  const [port, controllerPort] = [await freePort(), await freePort()];
  const brokers = [`127.0.0.1:${port}`];
  const client = (username: string, password: string, extra: Partial<KafkaConfig> = {}): Kafka =>
    new Kafka({
      clientId: `it-security-${username}`,
      brokers,
      ssl: { ca: [readFileSync(certs.caFile, 'utf8')] },
      sasl: { mechanism: 'scram-sha-512', username, password },
      logLevel: logLevel.NOTHING,
      ...extra,
    });
  const { logFile, stop } = await startKafkaNode({
    dir,
    what: 'secure kafka',
    properties: [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
      `listeners=SASL_SSL://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
      `advertised.listeners=SASL_SSL://127.0.0.1:${port}`,
      'controller.listener.names=CONTROLLER',
      'inter.broker.listener.name=SASL_SSL',
      'listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL',
      'sasl.enabled.mechanisms=SCRAM-SHA-512',
      'sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512',
      `listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="${KAFKA_SUPER_USER}" password="${adminPassword}";`,
      'ssl.keystore.type=PEM',
      `ssl.keystore.location=${certs.keystoreFile}`,
      'ssl.truststore.type=PEM',
      `ssl.truststore.location=${certs.caFile}`,
      'listener.name.controller.ssl.client.auth=required',
      'authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer',
      'allow.everyone.if.no.acl.found=false',
      `super.users=User:${KAFKA_SUPER_USER};User:CN=localhost`,
      // Topics exist only if someone with CREATE made them.
      'auto.create.topics.enable=false',
    ],
    // Every denied request, with principal, operation and resource: what an ACL experiment reads.
    log4j: ['log4j.logger.kafka.authorizer.logger=INFO'],
    // SCRAM credentials go into the metadata log at format time (KIP-900), before anyone can connect.
    formatArgs: Object.entries(users).flatMap(([name, password]) => ['--add-scram', `SCRAM-SHA-512=[name=${name},password=${password}]`]),
    client: () => client(KAFKA_SUPER_USER, adminPassword, { retry: { retries: 0 }, connectionTimeout: 1_000 }),
  });
  return { brokers, client, admin: () => client(KAFKA_SUPER_USER, adminPassword), logFile, stop };
}

/** A private ClickHouse 18.16 reachable only over HTTPS. */
export interface SecureClickHouse {
  /** `https://127.0.0.1:<port>`. */
  url: string;
  logFile: string;
  /** Kills the server (SIGTERM, SIGKILL after 10 s). */
  stop(): Promise<void>;
}

/**
 * Starts the Debian `clickhouse-server` in `dir` with `https_port` only (no plain HTTP, no native
 * TCP port), the certificate of `certs`, and one user, `username`, whose password is stored as
 * its SHA-256 (`password_sha256_hex`), reachable from loopback only. Base config: infra/clickhouse.ts.
 */
export async function startSecureClickHouse(options: { dir: string; certs: Certificates; username: string; password: string }): Promise<SecureClickHouse> {
  const { dir, certs, username, password } = options;
  for (const sub of ['data', 'tmp', 'user_files', 'format_schemas', 'logs']) mkdirSync(join(dir, sub), { recursive: true });
  const port = await freePort();
  const config = join(dir, 'config.xml');
  const logFile = join(dir, 'logs', 'server.log');
  const errorLog = join(dir, 'logs', 'error.log');
  const consoleLog = join(dir, 'logs', 'console.log');
  const hash = createHash('sha256').update(password).digest('hex');
  writeFileSync(
    config,
    `<?xml version="1.0"?>
<yandex>
  <logger>
    <level>information</level>
    <log>${logFile}</log>
    <errorlog>${errorLog}</errorlog>
    <size>10M</size>
    <count>1</count>
  </logger>
  <!-- HTTPS only: no http_port, no tcp_port. -->
  <https_port>${port}</https_port>
  <openSSL>
    <server>
      <certificateFile>${certs.certFile}</certificateFile>
      <privateKeyFile>${certs.keyFile}</privateKeyFile>
      <verificationMode>none</verificationMode>
      <loadDefaultCAFile>false</loadDefaultCAFile>
      <cacheSessions>true</cacheSessions>
      <disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1</disableProtocols>
      <preferServerCiphers>true</preferServerCiphers>
    </server>
  </openSSL>
  <listen_host>127.0.0.1</listen_host>
  <path>${join(dir, 'data')}/</path>
  <tmp_path>${join(dir, 'tmp')}/</tmp_path>
  <user_files_path>${join(dir, 'user_files')}/</user_files_path>
  <format_schema_path>${join(dir, 'format_schemas')}/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <max_concurrent_queries>100</max_concurrent_queries>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <mlock_executable>false</mlock_executable>
</yandex>
`,
    { mode: 0o600 },
  );
  writeFileSync(join(dir, 'users.xml'), usersXml(username, `<password_sha256_hex>${hash}</password_sha256_hex>`), { mode: 0o600 });
  const child = spawnDetached('/usr/sbin/clickhouse-server', [`--config-file=${config}`], { cwd: dir, logFile: consoleLog });
  const exited = watchExit(child);
  if (child.pid === undefined) throw new Error(`could not start clickhouse-server; see ${consoleLog}`);
  const pid = child.pid;
  started.add(pid);
  const url = `https://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    await stopProcess(pid, ['clickhouse', config], 10_000).catch(() => undefined);
    started.delete(pid);
  };
  try {
    await waitReady({
      what: 'secure clickhouse',
      probe: async () => {
        const ch = createClient({ url, username, password, tls: { ca_cert: readFileSync(certs.caFile) }, request_timeout: 2_000, clickhouse_settings: {}, log: { level: ClickHouseLogLevel.OFF } });
        try {
          const rs = await ch.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' });
          return ((await rs.json()) as { v: string }[])[0]?.v;
        } catch {
          return undefined;
        } finally {
          await ch.close();
        }
      },
      timeoutMs: 60_000,
      exited,
      logFiles: [errorLog, consoleLog],
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, logFile, stop };
}

/** One ACL: `operation` allowed on a resource, and why the service needs it (docs/security.md). */
export interface AclRule {
  resourceType: 'TOPIC' | 'GROUP' | 'TRANSACTIONAL_ID' | 'CLUSTER';
  patternType: 'LITERAL' | 'PREFIXED';
  resourceName: string;
  operation: keyof typeof AclOperationTypes;
  reason: string;
}

/** Names an ACL list is made for: the config keys they come from. */
export interface ServiceNames {
  /** input.topic */
  inputTopic: string;
  /** input.group_id: prefix of the internal topics, the stages' groups and transactional ids. */
  groupId: string;
  /** dead_letter.topic */
  deadLetterTopic: string;
  /** edge_rules.topic */
  edgeRulesTopic: string;
}

/** Group-id prefix of the throwaway groups that restore a changelog partition (consumers/changelog.ts). */
export const RESTORE_GROUP_PREFIX = 'burstwatch-restore-';

/**
 * The ACLs the live service needs, as docs/security.md lists them, each with its reason. Internal
 * topics, stage groups and transactional ids all start with `<group_id>-` (stage 1's group is
 * `<group_id>` itself), so prefixes on `<group_id>-` match nothing of another deployment's.
 */
export function serviceAcls(n: ServiceNames): AclRule[] {
  const internal = `${n.groupId}-`;
  return [
    { resourceType: 'TOPIC', patternType: 'LITERAL', resourceName: n.inputTopic, operation: 'READ', reason: 'stage 1 consumes the request logs (READ implies the DESCRIBE that finds the topic and its partitions)' },
    { resourceType: 'TOPIC', patternType: 'PREFIXED', resourceName: internal, operation: 'CREATE', reason: 'the four internal topics are created at the first start' },
    { resourceType: 'TOPIC', patternType: 'PREFIXED', resourceName: internal, operation: 'WRITE', reason: 'each stage writes its output and changelog in its transactions' },
    { resourceType: 'TOPIC', patternType: 'PREFIXED', resourceName: internal, operation: 'READ', reason: 'stages 2 and 3 consume them; changelogs are read back at restore' },
    { resourceType: 'TOPIC', patternType: 'PREFIXED', resourceName: internal, operation: 'DESCRIBE_CONFIGS', reason: 'at a restart, the cleanup.policy of each existing topic is checked' },
    { resourceType: 'TOPIC', patternType: 'LITERAL', resourceName: n.deadLetterTopic, operation: 'CREATE', reason: 'created at the first start' },
    { resourceType: 'TOPIC', patternType: 'LITERAL', resourceName: n.deadLetterTopic, operation: 'WRITE', reason: 'undecodable records go there' },
    { resourceType: 'TOPIC', patternType: 'LITERAL', resourceName: n.deadLetterTopic, operation: 'DESCRIBE_CONFIGS', reason: 'its cleanup.policy is checked at a restart' },
    { resourceType: 'TOPIC', patternType: 'LITERAL', resourceName: n.edgeRulesTopic, operation: 'CREATE', reason: 'created, compacted, at the first start' },
    { resourceType: 'TOPIC', patternType: 'LITERAL', resourceName: n.edgeRulesTopic, operation: 'WRITE', reason: 'rule changes are published there' },
    { resourceType: 'TOPIC', patternType: 'LITERAL', resourceName: n.edgeRulesTopic, operation: 'DESCRIBE_CONFIGS', reason: 'cleanup.policy=compact is checked at a restart' },
    { resourceType: 'GROUP', patternType: 'LITERAL', resourceName: n.groupId, operation: 'READ', reason: 'stage 1 joins the group `<group_id>` and commits its input offsets in its transactions' },
    { resourceType: 'GROUP', patternType: 'PREFIXED', resourceName: internal, operation: 'READ', reason: 'stages 2 and 3 join `<group_id>-windows` and `<group_id>-rules`' },
    { resourceType: 'GROUP', patternType: 'PREFIXED', resourceName: RESTORE_GROUP_PREFIX, operation: 'READ', reason: 'each changelog restore reads through a throwaway group `burstwatch-restore-<uuid>`' },
    { resourceType: 'TRANSACTIONAL_ID', patternType: 'PREFIXED', resourceName: internal, operation: 'WRITE', reason: 'one transactional producer per stage partition, `<group_id>-panes-<p>`, `<group_id>-windows-<p>`, `<group_id>-rules-<p>`' },
  ];
}

/**
 * `rules` less the one rule on `resourceType` `resourceName` for `operation`: the ACL set of a
 * leave-one-out case. Throws unless exactly one rule matches, so that a renamed resource cannot
 * turn the case into a run with every ACL.
 */
export function withoutAcl(rules: readonly AclRule[], drop: Pick<AclRule, 'resourceType' | 'resourceName' | 'operation'>): AclRule[] {
  const match = (r: AclRule): boolean => r.resourceType === drop.resourceType && r.resourceName === drop.resourceName && r.operation === drop.operation;
  const matches = rules.filter(match).length;
  if (matches !== 1) throw new Error(`withoutAcl: ${matches} rules match ${drop.operation} on ${drop.resourceType} ${drop.resourceName}, expected 1`);
  return rules.filter((r) => !match(r));
}

/** ACLs of an edge node following `edgeRulesTopic` with the SDK's `client_id` (edge/subscriber.ts). */
export function edgeAcls(edgeRulesTopic: string, clientId: string): AclRule[] {
  return [
    { resourceType: 'TOPIC', patternType: 'LITERAL', resourceName: edgeRulesTopic, operation: 'READ', reason: 'reads the rules from the beginning' },
    { resourceType: 'GROUP', patternType: 'PREFIXED', resourceName: `${clientId}-`, operation: 'READ', reason: 'joins a group of its own, `<client_id>-<uuid>`' },
  ];
}

/** ACLs of a producer of request logs. */
export function producerAcls(inputTopic: string): AclRule[] {
  return [{ resourceType: 'TOPIC', patternType: 'LITERAL', resourceName: inputTopic, operation: 'WRITE', reason: 'writes request logs (idempotent producers included)' }];
}

/** Allows `rules` to `User:<username>` from any host, as the super user. */
export async function grantAcls(admin: Admin, username: string, rules: readonly AclRule[]): Promise<void> {
  await admin.createAcls({
    acl: rules.map((r) => ({
      resourceType: AclResourceTypes[r.resourceType],
      resourceName: r.resourceType === 'CLUSTER' ? 'kafka-cluster' : r.resourceName,
      resourcePatternType: ResourcePatternTypes[r.patternType],
      principal: `User:${username}`,
      host: '*',
      operation: AclOperationTypes[r.operation],
      permissionType: AclPermissionTypes.ALLOW,
    })),
  });
}

/** What a run of the live service in a child process reported (secure-service-child.ts). */
export interface ChildReport {
  /** startService resolved. */
  started: boolean;
  /** The error startService threw, if it did. */
  error: ErrorReport | null;
  /** The error that stopped a stage, if any. */
  fatal: ErrorReport | null;
  /** `service.settled()` was true before the stop. */
  settled: boolean;
  stats: {
    messages: number;
    decoded: number;
    deadLettered: number;
    windowsClosed: number;
    verdicts: number;
    ruleUpserts: number;
    edgePublished: number;
    inserted: Record<string, number>;
  } | null;
  ms: number;
}

/** An error as the child saw it: name, message, `retriable`, kafkajs `type`, and its causes. */
export interface ErrorReport {
  name: string;
  message: string;
  retriable: boolean | null;
  type: string | null;
  causes: string[];
}

/** A finished child: its report (null if it printed none), exit code, everything it wrote, how long it took. */
export interface ChildRun {
  report: ChildReport | null;
  code: number | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Marks the report line on the child's stdout. */
export const REPORT_PREFIX = 'BURSTWATCH_TEST_REPORT ';

/**
 * Runs the live service on `config` in a child process (vite-node, straight from the sources) at
 * log level debug: it starts, waits until `messages` input messages are read and everything has
 * settled (or a stage fails, or `timeoutMs` passes), stops, and reports. stdout and stderr are
 * kept whole: pino writes to fd 2 directly, so only another process sees every byte. `env` is
 * added to a copy of this process's environment from which the password variables are removed.
 */
export async function runServiceChild(options: { dir: string; name: string; config: unknown; messages: number; env?: Record<string, string>; timeoutMs?: number }): Promise<ChildRun> {
  const job = join(options.dir, `${options.name}.json`);
  const timeoutMs = options.timeoutMs ?? 120_000;
  writeFileSync(job, JSON.stringify({ config: options.config, messages: options.messages, settleMs: Math.max(10_000, timeoutMs - 30_000) }));
  const env: NodeJS.ProcessEnv = { ...process.env, BURSTWATCH_LOG_LEVEL: 'debug', ...options.env };
  for (const key of ['BURSTWATCH_KAFKA_PASSWORD', 'BURSTWATCH_CLICKHOUSE_PASSWORD']) if (!options.env?.[key]) delete env[key];
  const t0 = Date.now();
  const child = spawn(process.execPath, [join(root, 'node_modules', 'vite-node', 'vite-node.mjs'), join(root, 'test', 'integration', 'secure-service-child.ts'), job], {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid !== undefined) started.add(child.pid);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  clearTimeout(timer);
  if (child.pid !== undefined) started.delete(child.pid);
  const line = stdout.split('\n').find((l) => l.startsWith(REPORT_PREFIX));
  const report = line ? (JSON.parse(line.slice(REPORT_PREFIX.length)) as ChildReport) : null;
  return { report, code, timedOut, stdout, stderr, ms: Date.now() - t0 };
}
