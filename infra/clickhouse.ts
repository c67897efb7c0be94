/**
 * A ClickHouse server on loopback with its own config, data and logs under `<stateDir>/clickhouse`,
 * so it never touches a system-wide installation (`/etc/clickhouse-server`, `/var/lib/clickhouse`).
 *
 * Binary: `clickhouse-server` on PATH, else a modern single `clickhouse` binary (`clickhouse server`),
 * else Debian's `clickhouse-server` package via apt-get (18.16 on bookworm). The config below uses only
 * settings that both 18.16 and current releases understand (`<yandex>` is still accepted as the root).
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InfraError } from '../errors.js';
import { logger } from '../logger.js';
import { aptInstall } from './apt.js';
import { LOCAL_HOST, type LocalPorts, type ServiceStatus } from './endpoints.js';
import { serviceDir } from './paths.js';
import {
  assertPortsFree,
  ownedPid,
  readText,
  removeFile,
  spawnDetached,
  stopProcess,
  waitReady,
  watchExit,
  which,
  writePidFile,
  type Progress, describeService, resumeRunning, stopService } from './processes.js';

/** Default time to wait for a started server to answer `SELECT version()`, ms. */
export const CLICKHOUSE_READY_TIMEOUT_MS = 60_000;

/** Debian packages installed when no ClickHouse binary is found. */
export const CLICKHOUSE_APT_PACKAGES = ['clickhouse-server', 'clickhouse-client'] as const;

/** Files of the local server under `<stateDir>/clickhouse`. */
export interface ClickHousePaths {
  dir: string;
  config: string;
  users: string;
  pidFile: string;
  endpointFile: string;
  /** Server log (level warning). */
  logFile: string;
  errorLog: string;
  /** The process's own stdout/stderr: config errors before the logger is up land here. */
  consoleLog: string;
}

/** Paths of the local server's files. */
export function clickhousePaths(): ClickHousePaths {
  const dir = serviceDir('clickhouse');
  return {
    dir,
    config: join(dir, 'config.xml'),
    users: join(dir, 'users.xml'),
    pidFile: join(dir, 'clickhouse.pid'),
    endpointFile: join(dir, 'clickhouse.endpoint'),
    logFile: join(dir, 'logs', 'server.log'),
    errorLog: join(dir, 'logs', 'error.log'),
    consoleLog: join(dir, 'logs', 'console.log'),
  };
}

const markers = (paths: ClickHousePaths): string[] => ['clickhouse', paths.config];

/** How to run the server: `clickhouse-server` or `clickhouse server`, or undefined if neither is installed. */
function findServer(): { command: string; args: string[] } | undefined {
  // Debian puts clickhouse-server in /usr/sbin, which a non-login or non-root PATH often lacks.
  const installed = (name: string, dirs: string[]): string | undefined =>
    which(name) ?? dirs.map((d) => `${d}/${name}`).find((p) => existsSync(p));
  const legacy = installed('clickhouse-server', ['/usr/sbin', '/usr/bin']);
  if (legacy !== undefined) return { command: legacy, args: [] };
  const single = installed('clickhouse', ['/usr/bin', '/usr/local/bin']);
  if (single !== undefined) return { command: single, args: ['server'] };
  return undefined;
}

/**
 * The server version if ClickHouse at `url` answers `/ping` and `SELECT version()` within `timeoutMs`
 * (default 2000), else undefined. `/ping` alone answers before the server can run queries.
 */
export async function clickhouseVersion(url: string, timeoutMs = 2_000): Promise<string | undefined> {
  try {
    const ping = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!ping.ok || (await ping.text()).trim() !== 'Ok.') return undefined;
    const res = await fetch(`${url}/?query=${encodeURIComponent('SELECT version()')}`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = (await res.text()).trim();
    return res.ok && /^\d+\.\d+/.test(body) ? body : undefined;
  } catch {
    return undefined;
  }
}

/** State of the local server: ours and alive (`running`), answering queries (`ready`), its version. */
export async function clickhouseStatus(ports: LocalPorts): Promise<ServiceStatus> {
  const paths = clickhousePaths();
  const pid = ownedPid(paths.pidFile, markers(paths));
  const wanted = `http://${LOCAL_HOST}:${ports.clickhouseHttp}`;
  const endpoint = (pid !== undefined ? readText(paths.endpointFile) : undefined) ?? wanted;
  const version = pid !== undefined ? await clickhouseVersion(endpoint) : undefined;
  return describeService({ name: 'clickhouse', pid, endpoint, ready: version !== undefined, version, logFile: paths.logFile, port: ports.clickhouseHttp });
}

/**
 * Starts the local server unless it already runs: installs ClickHouse with apt-get if no binary is
 * found (root only; others get the command), writes the private config, starts it detached and
 * waits up to `timeoutMs` (default 60 s) until it answers `SELECT version()`.
 */
export async function startClickHouse(options: {
  ports: LocalPorts;
  onProgress?: Progress;
  timeoutMs?: number;
}): Promise<ServiceStatus> {
  const { ports } = options;
  const say = options.onProgress ?? (() => undefined);
  const paths = clickhousePaths();
  const url = `http://${LOCAL_HOST}:${ports.clickhouseHttp}`;
  const current = await clickhouseStatus(ports);
  const resumed = await resumeRunning({
    current,
    wanted: url,
    probe: () => clickhouseVersion(url),
    status: () => clickhouseStatus(ports),
    timeoutMs: options.timeoutMs ?? CLICKHOUSE_READY_TIMEOUT_MS,
    logFiles: [paths.errorLog, paths.consoleLog],
    onProgress: say,
  });
  if (resumed) return resumed;

  await assertPortsFree(
    [
      { port: ports.clickhouseHttp, env: 'BURSTWATCH_CLICKHOUSE_HTTP_PORT' },
      { port: ports.clickhouseTcp, env: 'BURSTWATCH_CLICKHOUSE_TCP_PORT' },
    ],
    'clickhouse',
  );
  let server = findServer();
  if (server === undefined) {
    say('clickhouse: not installed, installing the Debian packages');
    await aptInstall(CLICKHOUSE_APT_PACKAGES, say);
    server = findServer();
    if (server === undefined) {
      throw new InfraError(`${CLICKHOUSE_APT_PACKAGES.join(', ')} installed but no clickhouse-server on PATH`);
    }
  }
  for (const sub of ['data', 'tmp', 'user_files', 'format_schemas', 'logs']) {
    mkdirSync(join(paths.dir, sub), { recursive: true });
  }
  writeFileSync(paths.config, configXml(paths, ports));
  writeFileSync(paths.users, usersXml());

  say(`clickhouse: starting server on ${url}`);
  const child = spawnDetached(server.command, [...server.args, `--config-file=${paths.config}`], {
    cwd: paths.dir,
    logFile: paths.consoleLog,
  });
  const exited = watchExit(child);
  if (child.pid === undefined) throw new InfraError(`could not start ${server.command}; see ${paths.consoleLog}`);
  writePidFile(paths.pidFile, child.pid);
  writeFileSync(paths.endpointFile, `${url}\n`);
  try {
    await waitReady({
      what: 'clickhouse',
      probe: () => clickhouseVersion(url),
      timeoutMs: options.timeoutMs ?? CLICKHOUSE_READY_TIMEOUT_MS,
      exited,
      logFiles: [paths.errorLog, paths.consoleLog],
      onProgress: say,
    });
  } catch (err) {
    await stopProcess(child.pid, markers(paths), 5_000).catch(() => undefined);
    removeFile(paths.pidFile);
    removeFile(paths.endpointFile);
    throw err;
  }
  logger.debug({ pid: child.pid, url }, 'clickhouse started');
  return clickhouseStatus(ports);
}

/** Stops the local server (SIGTERM, SIGKILL after 20 s). Resolves false if it was not running. */
export async function stopClickHouse(onProgress?: Progress): Promise<boolean> {
  const paths = clickhousePaths();
  return stopService('clickhouse', paths, markers(paths), onProgress);
}

function xmlEscape(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

function configXml(paths: ClickHousePaths, ports: LocalPorts): string {
  const dir = (sub: string): string => xmlEscape(join(paths.dir, sub) + '/');
  return `<?xml version="1.0"?>
<!-- Written by burstwatch infra on every start; edits are overwritten. -->
<yandex>
  <logger>
    <level>warning</level>
    <log>${xmlEscape(paths.logFile)}</log>
    <errorlog>${xmlEscape(paths.errorLog)}</errorlog>
    <size>10M</size>
    <count>3</count>
  </logger>
  <http_port>${ports.clickhouseHttp}</http_port>
  <tcp_port>${ports.clickhouseTcp}</tcp_port>
  <!-- Loopback only: the default user has no password. -->
  <listen_host>${LOCAL_HOST}</listen_host>
  <path>${dir('data')}</path>
  <tmp_path>${dir('tmp')}</tmp_path>
  <user_files_path>${dir('user_files')}</user_files_path>
  <format_schema_path>${dir('format_schemas')}</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <!-- Event times are stored and compared in UTC whatever the machine's zone. -->
  <timezone>UTC</timezone>
  <max_concurrent_queries>100</max_concurrent_queries>
  <!-- 18.16 defaults to a 5 GiB mark cache; a test server needs far less. -->
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <!-- Locking the binary in memory needs CAP_IPC_LOCK and buys nothing here. -->
  <mlock_executable>false</mlock_executable>
</yandex>
`;
}

/**
 * users.xml of a ClickHouse 18.16 server with one user reachable from loopback only.
 * `password` is the XML element that sets its password (`<password></password>` for none,
 * `<password_sha256_hex>…</password_sha256_hex>` for a hashed one).
 */
export function usersXml(user = 'default', password = '<password></password>'): string {
  return `<?xml version="1.0"?>
<!-- Written by burstwatch. One user, reachable from loopback only. -->
<yandex>
  <profiles>
    <default>
      <max_memory_usage>4000000000</max_memory_usage>
    </default>
  </profiles>
  <users>
    <${user}>
      ${password}
      <networks>
        <ip>127.0.0.1</ip>
        <ip>::1</ip>
      </networks>
      <profile>default</profile>
      <quota>default</quota>
    </${user}>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration>
        <queries>0</queries>
        <errors>0</errors>
        <result_rows>0</result_rows>
        <read_rows>0</read_rows>
        <execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
`;
}
