import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts', 'test/unit/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/harness/global-setup.ts'],
          // Only a backstop for a hang: every wait inside a test is for an event, bounded by its
          // own deadline that names the event (harness/wait.ts). A test's total time is a sum
          // of such waits and grows with the machine's load (the 20-SIGKILL test took 115 s on
          // a quiet machine and over 120 s beside other suites), so no total is asserted here.
          testTimeout: 900_000,
          hookTimeout: 300_000,
          // One PostgreSQL cluster is shared; files run one at a time on the 2-core machines.
          fileParallelism: false,
        },
      },
    ],
  },
});
