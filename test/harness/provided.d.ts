import 'vitest';

// What test/harness/global-setup.ts hands to the integration tests (`inject(...)`).
declare module 'vitest' {
  export interface ProvidedContext {
    /** Superuser URL of the test server, database `postgres`. */
    pgAdminUrl: string;
    /** Server binaries (pg_recvlogical, pg_ctl, ...); '' if none are installed. */
    pgBinDir: string;
    /** Data directory of the harness's own cluster; '' for an external server. */
    pgDataDir: string;
    /** Whether `CREATE EXTENSION timescaledb` can work on the test server. */
    timescale: boolean;
  }
}
