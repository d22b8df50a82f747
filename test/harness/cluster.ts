/**
 * A throwaway PostgreSQL cluster for integration tests: initdb into a fresh
 * temporary directory, a free loopback port, `wal_level=logical`, and removal of
 * everything on dispose. The machine's own PostgreSQL is never touched.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { chown, mkdir, mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ClusterOptions {
  /** Default `logical`. */
  walLevel?: 'logical' | 'replica';
  /** Extra `postgresql.conf` settings; they override the harness's own. */
  extraConf?: Record<string, string>;
  /**
   * The whole `pg_hba.conf`, instead of initdb's (which lets every user reach every
   * database and replication from loopback with a password). Keep a line for
   * `slotline_admin`, or the harness cannot connect.
   */
  hba?: string;
}

export interface Cluster extends AsyncDisposable {
  /** `postgres://slotline_admin:PASSWORD@127.0.0.1:PORT/postgres`, a superuser. */
  readonly adminUrl: string;
  readonly port: number;
  readonly dataDir: string;
  readonly binDir: string;
  /** The server log (`pg_ctl -l`), inside the data directory. */
  readonly logFile: string;
  /** Stops the server; a no-op when it is not running. Default mode `fast`. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts the server again on the same port and data directory. */
  start(): Promise<void>;
  restart(): Promise<void>;
  /** Sends a signal to the postmaster (e.g. SIGKILL to simulate a crash). */
  kill(signal: NodeJS.Signals): void;
  /** Stops the server (immediate) and removes its directory. */
  [Symbol.asyncDispose](): Promise<void>;
}

const ADMIN_USER = 'slotline_admin';
const START_TIMEOUT_S = 60;

interface PgPaths {
  binDir: string;
  pkgLibDir: string;
  shareDir: string;
}

let cachedPaths: PgPaths | undefined;

/**
 * The server binaries: `SLOTLINE_TEST_PG_BINDIR`, else `pg_config --bindir`,
 * else the highest `/usr/lib/postgresql/N/bin` (Debian's layout).
 */
export function pgPaths(): PgPaths {
  if (cachedPaths) return cachedPaths;
  const binDir = findBinDir();
  cachedPaths = { binDir, ...libAndShareDirs(binDir) };
  return cachedPaths;
}

function findBinDir(): string {
  const candidates: string[] = [];
  const fromEnv = process.env['SLOTLINE_TEST_PG_BINDIR'];
  if (fromEnv) candidates.push(fromEnv);
  const fromPgConfig = pgConfig('pg_config', '--bindir');
  if (fromPgConfig) candidates.push(fromPgConfig);
  candidates.push(...debianBinDirs());
  const found = candidates.find((dir) => existsSync(join(dir, 'initdb')));
  if (!found) {
    throw new Error(
      'no PostgreSQL server binaries found (looked for initdb via SLOTLINE_TEST_PG_BINDIR, ' +
        '`pg_config --bindir` and /usr/lib/postgresql/*/bin); install the `postgresql` package ' +
        'or set SLOTLINE_TEST_PG_URL to an existing server',
    );
  }
  return found;
}

function debianBinDirs(): string[] {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return [];
  return readdirSync(base)
    .filter((v) => /^\d+(\.\d+)?$/.test(v))
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => join(base, v, 'bin'));
}

function libAndShareDirs(binDir: string): { pkgLibDir: string; shareDir: string } {
  // The pg_config beside the binaries describes them; one on PATH only if it agrees.
  for (const cmd of [join(binDir, 'pg_config'), 'pg_config']) {
    if (pgConfig(cmd, '--bindir') !== binDir) continue;
    const pkgLibDir = pgConfig(cmd, '--pkglibdir');
    const shareDir = pgConfig(cmd, '--sharedir');
    if (pkgLibDir && shareDir) return { pkgLibDir, shareDir };
  }
  const version = /\/postgresql\/([^/]+)\/bin$/.exec(binDir)?.[1];
  if (version) {
    return { pkgLibDir: join(binDir, '..', 'lib'), shareDir: `/usr/share/postgresql/${version}` };
  }
  return { pkgLibDir: join(binDir, '..', 'lib'), shareDir: join(binDir, '..', 'share') };
}

function pgConfig(cmd: string, flag: string): string | undefined {
  try {
    return execFileSync(cmd, [flag], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return undefined;
  }
}

/** Whether the TimescaleDB extension is installed for the server binaries in use. */
export function timescaleAvailable(): boolean {
  const { pkgLibDir, shareDir } = pgPaths();
  const lib =
    existsSync(pkgLibDir) &&
    readdirSync(pkgLibDir).some((f) => f === 'timescaledb.so' || /^timescaledb.*\.so$/.test(f));
  return lib && existsSync(join(shareDir, 'extension', 'timescaledb.control'));
}

interface OsUser {
  name: string;
  uid: number;
  gid: number;
}

const SERVICE_USER = 'slotline-test';

/**
 * PostgreSQL refuses to run as root; as root the server runs as `postgres`
 * (or a system user created for the purpose). Otherwise as ourselves.
 */
async function serverUser(): Promise<OsUser | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const existing = lookupUser('postgres') ?? lookupUser(SERVICE_USER);
  if (existing) return existing;
  try {
    await exec('useradd', [
      '--system',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      SERVICE_USER,
    ]);
  } catch (err) {
    // Another test process may have created it at the same moment.
    if (!lookupUser(SERVICE_USER)) throw err;
  }
  const created = lookupUser(SERVICE_USER);
  if (!created) throw new Error(`useradd ${SERVICE_USER} succeeded but the user is not visible`);
  return created;
}

function lookupUser(name: string): OsUser | undefined {
  try {
    const uid = Number(
      execFileSync('id', ['-u', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }),
    );
    const gid = Number(
      execFileSync('id', ['-g', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }),
    );
    return { name, uid, gid };
  } catch {
    return undefined;
  }
}

/** Environment for the server tools: no PG* variables leaking in from the caller. */
function toolEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  return env;
}

function exec(
  cmd: string,
  args: string[],
  opts: { cwd?: string } = {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { cwd: opts.cwd, env: toolEnv(), maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) {
          const code = (err as { code?: unknown }).code;
          reject(
            new Error(
              `${cmd} ${args.join(' ')} failed (exit ${String(code)}): ${stderr.trim() || stdout.trim()}`,
              {
                cause: err,
              },
            ),
          );
        } else {
          resolve({ stdout, stderr });
        }
      },
    );
  });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() =>
        port > 0 ? resolve(port) : reject(new Error('could not find a free port')),
      );
    });
  });
}

function confValue(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/** Every cluster not yet disposed, so an exiting test process does not leave servers behind. */
const live = new Set<PgCluster>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const cluster of live) cluster.destroySync();
  });
}

class PgCluster implements Cluster {
  readonly binDir: string;
  readonly dataDir: string;
  readonly logFile: string;
  port: number;
  private readonly rootDir: string;
  private readonly user: OsUser | undefined;
  private readonly password: string;
  private readonly walLevel: 'logical' | 'replica';
  private readonly extraConf: Record<string, string>;
  private disposed = false;

  constructor(init: {
    binDir: string;
    rootDir: string;
    user: OsUser | undefined;
    password: string;
    port: number;
    walLevel: 'logical' | 'replica';
    extraConf: Record<string, string>;
  }) {
    this.binDir = init.binDir;
    this.rootDir = init.rootDir;
    this.dataDir = join(init.rootDir, 'data');
    this.logFile = join(this.dataDir, 'postgres.log');
    this.user = init.user;
    this.password = init.password;
    this.port = init.port;
    this.walLevel = init.walLevel;
    this.extraConf = init.extraConf;
  }

  get adminUrl(): string {
    return `postgres://${ADMIN_USER}:${this.password}@127.0.0.1:${this.port}/postgres`;
  }

  /** Runs a server tool as the server's OS user. */
  tool(name: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
    const bin = join(this.binDir, name);
    if (this.user)
      return exec('runuser', ['-u', this.user.name, '--', bin, ...args], { cwd: this.rootDir });
    return exec(bin, args, { cwd: this.rootDir });
  }

  async writeConf(): Promise<void> {
    const conf: Record<string, string> = {
      port: String(this.port),
      listen_addresses: '127.0.0.1',
      unix_socket_directories: this.dataDir,
      wal_level: this.walLevel,
      max_replication_slots: '64',
      max_wal_senders: '64',
      max_connections: '200',
      wal_sender_timeout: '60s',
      // Throwaway data: durability only costs time here.
      fsync: 'off',
      full_page_writes: 'off',
      logging_collector: 'off',
    };
    if (timescaleAvailable()) {
      conf['shared_preload_libraries'] = 'timescaledb';
      conf['timescaledb.telemetry_level'] = 'off';
    }
    Object.assign(conf, this.extraConf);
    const lines = Object.entries(conf).map(([k, v]) => `${k} = ${confValue(v)}`);
    await writeFile(join(this.dataDir, 'slotline-test.conf'), lines.join('\n') + '\n');
    if (this.user)
      await chown(join(this.dataDir, 'slotline-test.conf'), this.user.uid, this.user.gid);
  }

  /** The postmaster's pid from `postmaster.pid`, if the file exists. */
  postmasterPid(): number | undefined {
    try {
      const pid = Number(readFileSync(join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  running(): boolean {
    const pid = this.postmasterPid();
    return pid !== undefined && alive(pid);
  }

  async start(): Promise<void> {
    this.assertLive();
    // After a crash (kill -9) the old backends notice the postmaster's death within
    // moments, but until they exit the shared memory block is "still in use".
    const deadline = Date.now() + 20_000;
    for (;;) {
      const { ok, log } = await this.tryStart();
      if (ok) return;
      if (
        Date.now() < deadline &&
        /pre-existing shared memory block|lock file .* already exists/.test(log)
      ) {
        await sleep(250);
        continue;
      }
      throw new Error(
        `PostgreSQL failed to start (data directory ${this.dataDir}); server log:\n${log}`,
      );
    }
  }

  /** One `pg_ctl start`; on failure, the part of the log this attempt wrote. */
  async tryStart(): Promise<{ ok: boolean; log: string }> {
    const offset = await fileSize(this.logFile);
    try {
      await this.tool('pg_ctl', [
        'start',
        '-D',
        this.dataDir,
        '-l',
        this.logFile,
        '-w',
        '-t',
        String(START_TIMEOUT_S),
        '-s',
      ]);
      return { ok: true, log: '' };
    } catch (err) {
      const log = await readTail(this.logFile, offset);
      return {
        ok: false,
        log: `${log}\n${err instanceof Error ? err.message : String(err)}`.trim(),
      };
    }
  }

  /** First start: a port that was free a moment ago may be taken by now, so retry with another. */
  async firstStart(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      await this.writeConf();
      const { ok, log } = await this.tryStart();
      if (ok) return;
      if (
        attempt < 5 &&
        /could not bind|Address already in use|could not create any TCP\/IP sockets/.test(log)
      ) {
        this.port = await freePort();
        continue;
      }
      throw new Error(
        `PostgreSQL failed to start (data directory ${this.dataDir}); server log:\n${log}`,
      );
    }
  }

  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    const pid = this.postmasterPid();
    if (pid === undefined || !alive(pid)) return;
    try {
      await this.tool('pg_ctl', [
        'stop',
        '-D',
        this.dataDir,
        '-m',
        mode,
        '-w',
        '-t',
        String(START_TIMEOUT_S),
        '-s',
      ]);
    } catch (err) {
      if (!this.running()) return;
      const log = await readTail(this.logFile, Math.max(0, (await fileSize(this.logFile)) - 8192));
      throw new Error(`PostgreSQL failed to stop (${mode}); server log tail:\n${log}`, {
        cause: err,
      });
    }
  }

  async restart(): Promise<void> {
    await this.stop('fast');
    await this.start();
  }

  kill(signal: NodeJS.Signals): void {
    const pid = this.postmasterPid();
    if (pid === undefined)
      throw new Error(`no postmaster.pid in ${this.dataDir}: the server is not running`);
    process.kill(pid, signal);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    live.delete(this);
    try {
      await this.stop('immediate');
    } catch {
      this.killQuietly();
    }
    await rm(this.rootDir, { recursive: true, force: true });
  }

  /** For the exit hook: no awaiting possible there. */
  destroySync(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.killQuietly();
    rmSync(this.rootDir, { recursive: true, force: true });
  }

  private killQuietly(): void {
    const pid = this.postmasterPid();
    if (pid === undefined) return;
    try {
      // SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its children with it.
      process.kill(pid, 'SIGQUIT');
    } catch {
      // already gone
    }
  }

  private assertLive(): void {
    if (this.disposed) throw new Error('the cluster has been disposed');
  }
}

/** Whether a process exists and is not a zombie awaiting its parent. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ..."; comm may contain spaces, so read after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/** The log from `offset` on, at most its last 60 lines. */
async function readTail(path: string, offset: number): Promise<string> {
  try {
    const file = await open(path, 'r');
    try {
      const size = (await file.stat()).size;
      const start = Math.max(offset, size - 64 * 1024);
      const buf = Buffer.alloc(Math.max(0, size - start));
      await file.read(buf, 0, buf.length, start);
      return buf.toString('utf8').trimEnd().split('\n').slice(-60).join('\n');
    } finally {
      await file.close();
    }
  } catch {
    return '(no server log)';
  }
}

/** initdb a fresh cluster in a temporary directory and start it. */
export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const { binDir } = pgPaths();
  const user = await serverUser();
  const rootDir = await mkdtemp(join(tmpdir(), 'slotline-pg-'));
  installExitHook();
  let cluster: PgCluster | undefined;
  try {
    const dataDir = join(rootDir, 'data');
    await mkdir(dataDir, { mode: 0o700 });
    const password = randomBytes(18).toString('hex');
    const pwFile = join(rootDir, 'pwfile');
    await writeFile(pwFile, password + '\n', { mode: 0o600 });
    if (user) {
      for (const path of [rootDir, dataDir, pwFile]) await chown(path, user.uid, user.gid);
    }
    cluster = new PgCluster({
      binDir,
      rootDir,
      user,
      password,
      port: await freePort(),
      walLevel: opts.walLevel ?? 'logical',
      extraConf: opts.extraConf ?? {},
    });
    live.add(cluster);
    await cluster.tool('initdb', [
      '-D',
      dataDir,
      '-U',
      ADMIN_USER,
      `--pwfile=${pwFile}`,
      '--auth-local=trust',
      '--auth-host=scram-sha-256',
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
      '--no-instructions',
    ]);
    await rm(pwFile);
    // Rewritten in place: the file keeps the owner initdb gave it.
    if (opts.hba !== undefined) await writeFile(join(dataDir, 'pg_hba.conf'), opts.hba);
    // Our settings live in their own file so a retry on another port can rewrite it.
    await writeFile(join(dataDir, 'postgresql.conf'), "\ninclude 'slotline-test.conf'\n", {
      flag: 'a',
    });
    await cluster.firstStart();
    return cluster;
  } catch (err) {
    // A start that timed out may still have left a postmaster running.
    if (cluster) await cluster[Symbol.asyncDispose]().catch(() => undefined);
    await rm(rootDir, { recursive: true, force: true });
    throw err;
  }
}
