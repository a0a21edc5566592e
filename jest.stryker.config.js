// Mutation testing (npm run mutate): only the fast unit tests, compiled into the Stryker sandbox's dist/.
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/dist/tests/unit'],
  testMatch: ['**/*.unit.test.js'],
  // Plain JavaScript from tsc: no babel transform (it only costs time on every mutant's run).
  transform: {},
};
