// Jest runs the compiled tests (npm test builds first): worker threads and cells are plain JavaScript
// anyway, and a TypeScript transform would not reach them.
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/dist/tests'],
  testMatch: ['**/*.test.js'],
  testTimeout: 60000,
  maxWorkers: 2,
  verbose: true,
};
