import { configDefaults, defineConfig } from 'vitest/config';
import { DEPLOY_TESTS, HEAVY_INTEGRATION_TESTS } from './test/suites.js';

/**
 * Four projects, split as test/suites.ts says: `npm test` runs unit and integration,
 * `npm run test:heavy` runs deploy and heavy.
 */

/** What the integration projects share: one PostgreSQL cluster, one file at a time. */
const integration = {
  globalSetup: ['test/harness/global-setup.ts'],
  // Only a backstop for a hang: every wait inside a test is for an event, bounded by its
  // own deadline that names the event (harness/wait.ts). A test's total time is a sum
  // of such waits and grows with the machine's load (the 20-SIGKILL test took 115 s on
  // a quiet machine and over 120 s beside other suites), so no total is asserted here.
  testTimeout: 900_000,
  hookTimeout: 300_000,
  // One PostgreSQL cluster is shared; files run one at a time on the 2-core machines.
  fileParallelism: false,
};

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts', 'test/unit/**/*.test.ts'],
          exclude: [...configDefaults.exclude, ...DEPLOY_TESTS],
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          exclude: [...configDefaults.exclude, ...HEAVY_INTEGRATION_TESTS],
          ...integration,
        },
      },
      {
        test: {
          name: 'deploy',
          include: DEPLOY_TESTS,
        },
      },
      {
        test: {
          name: 'heavy',
          include: HEAVY_INTEGRATION_TESTS,
          ...integration,
          // After the core projects when one run takes all of them (`vitest run`), so that
          // two clusters' worth of tests never share the machine.
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
