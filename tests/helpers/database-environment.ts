/**
 * Jest's node environment, plus: once a test file is done, the PostgreSQL databases it made are dropped. Here
 * rather than in an afterAll of a setup file, because jest runs a setup file's afterAll before the test file's
 * own (the one that stops its servers); an environment's teardown comes after every hook of the file.
 */
import type { EnvironmentContext, JestEnvironmentConfig } from '@jest/environment';
import { TestEnvironment } from 'jest-environment-node';
import { dropTestDatabases, fileDatabasePrefix, TEST_STORE } from './test-database';

export default class DatabaseEnvironment extends TestEnvironment {
  private readonly testPath: string;

  constructor(config: JestEnvironmentConfig, context: EnvironmentContext) {
    super(config, context);
    this.testPath = context.testPath;
  }

  override async teardown(): Promise<void> {
    await super.teardown();
    if (TEST_STORE === 'postgresql') await dropTestDatabases(fileDatabasePrefix(this.testPath));
  }
}
