/**
 * Which command runs which test file. `npm test` runs the projects `unit` and `integration`:
 * everything a contributor needs on every change, with Node and PostgreSQL only, in minutes.
 * `npm run test:heavy` runs `deploy` and `heavy`: what needs more time or more tools (Java and
 * Maven for Kafka, promtool and prometheus, kubectl or kustomize). vitest.config.ts builds the
 * projects from these lists; test/unit/suites.test.ts checks that every test file is in
 * exactly one project and every project in exactly one command.
 */

/** Heavy, without a database: the deploy/ manifests, the image recipe, promtool on the rules. */
export const DEPLOY_TESTS = ['test/unit/deploy.test.ts', 'test/unit/promtool.test.ts'];

/**
 * Heavy integration tests: Kafka, faults and soaks, volumes (a snapshot of 150,000 rows under
 * writes, bounds, memory), hostile input, the dead-letter and backfill edge cases of issue 11,
 * the model's random sequences, a real Prometheus, the container image built with podman, Ponder
 * redeploys followed at 100,000 trades (with and without Kafka). `npm test` keeps each feature's main path
 * (stream, a first start's snapshot, the commands, admin API, backfill, verify, dead letters,
 * the apply rule, standby, roles, replica identity, publication and column changes, bad input,
 * the demo, the README's first screen, the model's known cases).
 */
export const HEAVY_INTEGRATION_TESTS = [
  'test/integration/kafka-broker.test.ts',
  'test/integration/kafka.test.ts',
  'test/integration/kafka-exactly-once.test.ts',
  'test/integration/faults-kafka.test.ts',
  'test/integration/lifecycle-kafka.test.ts',
  'test/integration/faults.test.ts',
  'test/integration/faults-ddl.test.ts',
  'test/integration/faults-kill.test.ts',
  'test/integration/faults-servers.test.ts',
  'test/integration/faults-slot.test.ts',
  'test/integration/lifecycle.test.ts',
  'test/integration/snapshot.test.ts',
  'test/integration/bounds.test.ts',
  'test/integration/memory.test.ts',
  'test/integration/hostile.test.ts',
  'test/integration/dead-letter-retry.test.ts',
  'test/integration/backfill-rule.test.ts',
  'test/integration/model-soak.test.ts',
  'test/integration/observability.test.ts',
  'test/integration/check-kafka.test.ts',
  'test/integration/container.test.ts',
  'test/integration/ponder-follow.test.ts',
  'test/integration/ponder-follow-kafka.test.ts',
];

/** The vitest projects each npm script runs. */
export const COMMAND_PROJECTS = {
  test: ['unit', 'integration'],
  'test:heavy': ['deploy', 'heavy'],
} as const;
