import { defineConfig } from 'vitest/config';

// Unit tests sit beside the code; integration tests (real Kafka and ClickHouse started by
// infra/) live in test/integration and infra/, and share one global setup that brings the
// services up. The machine has 2 cores, so integration files run one at a time.
export default defineConfig({
  test: {
    reporters: ['default', './test/summary-reporter.ts'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['**/*.test.ts'],
          exclude: ['node_modules/**', 'dist/**', 'test/integration/**', 'infra/**', '.burstwatch/**'],
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts', 'infra/**/*.test.ts'],
          globalSetup: ['./test/global-setup.ts'],
          pool: 'forks',
          poolOptions: { forks: { singleFork: true } },
          testTimeout: 180_000,
          hookTimeout: 600_000,
        },
      },
    ],
  },
});
