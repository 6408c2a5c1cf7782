import { describe } from 'node:test';
import { mariadbPairSuite, openMigratedOnPair } from '../helpers/mariadb.js';
import { registerRepositorySuite } from '../helpers/repository-suite.js';

const pairSuite = mariadbPairSuite();

describe('users repository on the MariaDB pair', { timeout: 600_000 }, () => {
  pairSuite.register();
  registerRepositorySuite({
    dialect: 'mysql',
    open: (t) => openMigratedOnPair(t, pairSuite.require()),
  });
});
