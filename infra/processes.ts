import { spawn, type ChildProcess } from 'node:child_process';
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  fstatSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { delimiter, join } from 'node:path';
import { InfraError } from '../errors.js';
import type { ServiceName, ServiceStatus } from './endpoints.js';

/** Receives one human-readable progress line (no trailing newline). */
export type Progress = (message: string) => void;

/** Absolute path of `command` on `PATH`, or undefined when it is not installed. */
export function which(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next PATH entry
    }
  }
  return undefined;
}

/** Whether this process runs as root (installing with apt-get needs it). False on Windows. */
export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Output kept from a foreground command for error messages, characters. */
const OUTPUT_CAP = 64 * 1024;

/** What a finished foreground command printed. */
export interface RunResult {
  stdout: string;
  /** stdout and stderr interleaved, last 64 KiB. */
  output: string;
}

/**
 * Runs a foreground command to completion and returns what it printed. On a non-zero exit it throws an
 * InfraError that quotes the command and the end of its output, because the output (Maven, apt,
 * Kafka's StorageTool) is the only place that says what went wrong. `timeoutMs` (default none)
 * kills a command that hangs, e.g. on a network that drops packets instead of refusing.
 */
export async function run(
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let combined = '';
    const keep = (text: string, chunk: string): string => (text + chunk).slice(-OUTPUT_CAP);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout = keep(stdout, chunk);
      combined = keep(combined, chunk);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      combined = keep(combined, chunk);
    });
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => child.kill('SIGKILL'), options.timeoutMs).unref();
    const printable = [command, ...args].join(' ');
    child.on('error', (err) => {
      if (timer) clearTimeout(timer);
      reject(new InfraError(`could not run \`${printable}\`: ${err.message}`, { cause: err }));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (code === 0) return resolve({ stdout, output: combined });
      const why = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      reject(new InfraError(`\`${printable}\` ${why}:\n${lastLines(combined, 25)}`));
    });
  });
}

function lastLines(text: string, count: number): string {
  return text.trimEnd().split('\n').slice(-count).join('\n');
}

/** The last `count` lines of a log file (reads at most its last 64 KiB), or '' if it is missing. */
export function tailFile(file: string, count = 20): string {
  if (!existsSync(file)) return '';
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, OUTPUT_CAP);
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, size - length);
    return lastLines(buf.toString('utf8'), count);
  } finally {
    closeSync(fd);
  }
}

/** The pid stored in a pid file, or undefined when the file is missing or garbled. */
export function readPidFile(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Writes a pid file (plain decimal pid and a newline, as daemons do). */
export function writePidFile(file: string, pid: number): void {
  writeFileSync(file, `${pid}\n`);
}

/** Reads a small text file, or undefined when it does not exist. */
export function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * Whether `pid` is a live process whose command line contains every string in `markers`.
 * Checking the command line (Linux `/proc`) guards against a recycled pid after a reboot or a
 * crash making us signal or trust an unrelated process; zombies count as dead. Where `/proc` is
 * missing only liveness is checked.
 */
export function processMatches(pid: number, markers: readonly string[]): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    // ESRCH: gone. EPERM: another user's process, so not one we started.
    return false;
  }
  if (!existsSync('/proc/self/cmdline')) return true;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z' || state === 'X') return false;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
    return markers.every((m) => cmdline.includes(m));
  } catch {
    return false; // exited between the checks
  }
}

/** The pid in `pidFile` if that process is alive and is ours (see {@link processMatches}). */
export function ownedPid(pidFile: string, markers: readonly string[]): number | undefined {
  const pid = readPidFile(pidFile);
  return pid !== undefined && processMatches(pid, markers) ? pid : undefined;
}

/**
 * Starts a long-running server that outlives this process: its own session and process group
 * (`detached`), stdout and stderr appended to `logFile`, and `unref()` so the caller may exit.
 */
export function spawnDetached(
  command: string,
  args: string[],
  options: { cwd: string; logFile: string; env?: NodeJS.ProcessEnv },
): ChildProcess {
  const out = openSync(options.logFile, 'a');
  try {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      detached: true,
      stdio: ['ignore', out, out],
    });
    // Without a listener a failed exec (ENOENT) would be an uncaught 'error' event.
    child.on('error', () => undefined);
    child.unref();
    return child;
  } finally {
    closeSync(out); // the child holds its own copy of the descriptor
  }
}

/** Tracks whether a spawned child has exited; returns a description such as `exited with code 1`. */
export function watchExit(child: ChildProcess): () => string | undefined {
  let exited: string | undefined;
  child.once('error', (err) => (exited = `could not be started: ${err.message}`));
  child.once('exit', (code, signal) => (exited = signal ? `was killed by ${signal}` : `exited with code ${code}`));
  return () => exited;
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    // Detached children lead their own process group, so this also reaches anything they forked.
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/**
 * Stops a server we started: SIGTERM, up to `graceMs` (default 20 s) for a clean shutdown
 * (Kafka flushes and closes its logs, ClickHouse finishes merges), then SIGKILL.
 * Resolves true if it had to kill.
 */
export async function stopProcess(pid: number, markers: readonly string[], graceMs = 20_000): Promise<boolean> {
  if (!processMatches(pid, markers)) return false;
  signalGroup(pid, 'SIGTERM');
  if (await waitGone(pid, markers, graceMs)) return false;
  signalGroup(pid, 'SIGKILL');
  if (!(await waitGone(pid, markers, 5_000))) {
    throw new InfraError(`process ${pid} survived SIGKILL; stop it by hand`);
  }
  return true;
}

async function waitGone(pid: number, markers: readonly string[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!processMatches(pid, markers)) return true;
    await sleep(200);
  }
  return !processMatches(pid, markers);
}

/** Removes a file if it exists. */
export function removeFile(file: string): void {
  rmSync(file, { force: true });
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Whether something accepts TCP connections on `host:port` (connect timeout `timeoutMs`, default 500 ms). */
export function portInUse(port: number, host = '127.0.0.1', timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host });
    const done = (inUse: boolean): void => {
      socket.destroy();
      resolve(inUse);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Refuses to start a service whose port is taken by a process `infra` did not start, because the
 * readiness probe would then talk to that process and report a server we do not control as ours.
 */
export async function assertPortsFree(ports: { port: number; env: string }[], service: string): Promise<void> {
  for (const { port, env } of ports) {
    if (await portInUse(port)) {
      throw new InfraError(
        `cannot start ${service}: 127.0.0.1:${port} is already in use by a process that burstwatch infra did ` +
          `not start (find it with \`ss -ltnp 'sport = :${port}'\`); stop it, or pick another port with ${env}`,
      );
    }
  }
}

/**
 * Polls `probe` every `intervalMs` (default 500 ms) until it returns a value, the child exits
 * (fails at once, with the log tail) or `timeoutMs` passes (a retriable InfraError naming the log).
 */
export async function waitReady<T>(options: {
  what: string;
  probe: () => Promise<T | undefined>;
  timeoutMs: number;
  intervalMs?: number;
  exited?: () => string | undefined;
  logFiles: string[];
  onProgress?: Progress;
}): Promise<T> {
  const started = Date.now();
  let nextReport = started + 10_000;
  const logs = (): string =>
    options.logFiles
      .map((f) => {
        const tail = tailFile(f, 15);
        return tail ? `\n--- last lines of ${f} ---\n${tail}` : '';
      })
      .join('');
  for (;;) {
    const value = await options.probe();
    if (value !== undefined) return value;
    const exited = options.exited?.();
    const see = `see ${options.logFiles.join(' and ')}`;
    if (exited !== undefined) {
      throw new InfraError(`${options.what} ${exited} before it was ready; ${see}${logs()}`);
    }
    const now = Date.now();
    if (now - started > options.timeoutMs) {
      const seconds = Math.round(options.timeoutMs / 1000);
      throw new InfraError(`${options.what} was not ready after ${seconds} s; ${see}${logs()}`, { retriable: true });
    }
    if (now >= nextReport) {
      options.onProgress?.(`${options.what}: still waiting (${Math.round((now - started) / 1000)} s)`);
      nextReport = now + 10_000;
    }
    await sleep(options.intervalMs ?? 500);
  }
}

/**
 * Assembles what `infra status` shows of one service: `running` when a process we started is
 * alive, `ready` when it answers, and a note when a process we did not start holds its port.
 */
export async function describeService(s: {
  name: ServiceName;
  pid: number | undefined;
  endpoint: string;
  ready: boolean;
  version: string | undefined;
  logFile: string;
  port: number;
}): Promise<ServiceStatus> {
  const status: ServiceStatus = { name: s.name, running: s.pid !== undefined, ready: s.ready, endpoint: s.endpoint, logFile: s.logFile };
  if (s.pid !== undefined) status.pid = s.pid;
  if (s.version !== undefined) status.version = s.version;
  if (s.pid === undefined && (await portInUse(s.port))) {
    status.note = `port ${s.port} is held by a process burstwatch infra did not start`;
  }
  return status;
}

/**
 * When a service we started earlier is still running: fails if it listens elsewhere than
 * `wanted`, else waits until it answers and returns its fresh status. Returns null when it is
 * not running, so the caller starts it.
 */
export async function resumeRunning(options: {
  current: ServiceStatus;
  wanted: string;
  probe: () => Promise<unknown>;
  status: () => Promise<ServiceStatus>;
  timeoutMs: number;
  logFiles: string[];
  onProgress: Progress;
}): Promise<ServiceStatus | null> {
  const { current, wanted } = options;
  if (!current.running) return null;
  if (current.endpoint !== wanted) {
    throw new InfraError(
      `${current.name} already runs on ${current.endpoint} (pid ${current.pid}), not on the requested ${wanted}; ` +
        'run `burstwatch infra down` first to restart it on the new port',
    );
  }
  if (current.ready) return current;
  options.onProgress(`${current.name}: started earlier, waiting until it answers`);
  await waitReady({
    what: current.name,
    probe: async () => ((await options.probe()) ? true : undefined),
    timeoutMs: options.timeoutMs,
    logFiles: options.logFiles,
    onProgress: options.onProgress,
  });
  return options.status();
}

/** Stops the process a service's pid file names, if it is ours, and removes its pid and endpoint files. True if it was running. */
export async function stopService(
  name: ServiceName,
  files: { pidFile: string; endpointFile: string },
  processMarkers: readonly string[],
  onProgress?: Progress,
  graceMs?: number,
): Promise<boolean> {
  const pid = ownedPid(files.pidFile, processMarkers);
  if (pid !== undefined) {
    onProgress?.(`${name}: stopping pid ${pid}`);
    await stopProcess(pid, processMarkers, graceMs);
  }
  removeFile(files.pidFile);
  removeFile(files.endpointFile);
  return pid !== undefined;
}
