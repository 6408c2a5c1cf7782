import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { generateUsers } from '../../scripts/generate-users-lib.js';
import { REPO_ROOT } from '../helpers/paths.js';

describe('the sample data generator', () => {
  it('writes data/users.csv byte for byte: the bundled file is the committed generator’s', async () => {
    const bundled = await readFile(join(REPO_ROOT, 'data/users.csv'), 'utf8');
    assert.equal([...generateUsers(1000)].join(''), bundled);
    assert.deepEqual(bundled.split('\n').slice(0, 4), [
      'NAME,STREET,CITY,STATE,USER_DATE',
      'Duane Adams,Hojzi Path,Zurmubku,NY,08/08/43',
      'Ruby Hampton,Seime Plaza,Ikduju,KS,16/09/86',
      'Carl Johnson,Zopwe Drive,Ehazeru,RI,27/11/64',
    ]);
  });

  it('writes the same rows as JSON and NDJSON', () => {
    const csvRows = [...generateUsers(1500)].join('').trimEnd().split('\n').slice(1);
    const fromJson = JSON.parse([...generateUsers(1500, 'json')].join('')) as object[];
    const fromNdjson = [...generateUsers(1500, 'ndjson')]
      .join('')
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as object);
    assert.equal(fromJson.length, 1500);
    assert.deepEqual(fromNdjson, fromJson);
    assert.deepEqual(
      fromJson.map((user) => Object.values(user).join(',')),
      csvRows,
    );
  });
});
