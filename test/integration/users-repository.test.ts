import { describe } from 'node:test';
import { registerRepositorySuite } from '../helpers/repository-suite.js';
import { createTestDatabase } from '../helpers/test-database.js';

describe('users repository on SQLite', () => {
  registerRepositorySuite({
    dialect: 'sqlite',
    open: async (t) => (await createTestDatabase(t)).db,
  });
});
