import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RawUser } from '../../src/users/user.js';
import { validateUser } from '../../src/users/validate-user.js';

const good: RawUser = {
  NAME: 'Duane Adams',
  STREET: 'Hojzi Path',
  CITY: 'Zurmubku',
  STATE: 'NY',
  USER_DATE: '08/08/43',
};

function problemsOf(changes: Partial<RawUser>): string[] {
  const result = validateUser({ ...good, ...changes });
  return result.ok ? [] : result.problems.map((p) => `${p.field}: ${p.reason}`);
}

describe('validateUser', () => {
  it('accepts a seed row unchanged', () => {
    assert.deepEqual(validateUser(good), {
      ok: true,
      user: {
        name: 'Duane Adams',
        street: 'Hojzi Path',
        city: 'Zurmubku',
        state: 'NY',
        userDate: '08/08/43',
      },
    });
  });

  it('trims surrounding whitespace, upper-cases STATE and keeps the rest exactly', () => {
    const result = validateUser({
      NAME: '  Zoë  Ødegård ',
      STREET: '\tA  B ',
      CITY: 'c',
      STATE: ' ny',
      USER_DATE: ' 01/01/00 ',
    });
    assert.deepEqual(result, {
      ok: true,
      user: { name: 'Zoë  Ødegård', street: 'A  B', city: 'c', state: 'NY', userDate: '01/01/00' },
    });
  });

  it('rejects empty text fields', () => {
    assert.deepEqual(problemsOf({ NAME: '  ', CITY: '' }), [
      'NAME: must not be empty',
      'CITY: must not be empty',
    ]);
  });

  it('counts characters, not UTF-16 units, against the 255 limit', () => {
    assert.deepEqual(problemsOf({ NAME: '😀'.repeat(255) }), []);
    assert.deepEqual(problemsOf({ STREET: 'x'.repeat(256) }), [
      'STREET: longer than 255 characters',
    ]);
  });

  it('accepts states, DC and territories, and rejects anything else', () => {
    for (const state of ['CA', 'DC', 'PR', 'GU', 'VI', 'AS', 'MP', 'wy'])
      assert.deepEqual(problemsOf({ STATE: state }), []);
    assert.deepEqual(problemsOf({ STATE: 'ZZ' }), [
      'STATE: "ZZ" is not a US state, DC or territory code (e.g. NY)',
    ]);
    assert.equal(problemsOf({ STATE: 'New York' }).length, 1);
  });

  it('requires a real dd/mm/yy calendar date', () => {
    for (const date of ['31/01/99', '30/04/99', '29/02/00', '29/02/96', '28/02/01']) {
      assert.deepEqual(problemsOf({ USER_DATE: date }), [], date);
    }
    assert.deepEqual(problemsOf({ USER_DATE: '31/02/99' }), [
      'USER_DATE: "31/02/99" is not a calendar date',
    ]);
    assert.deepEqual(problemsOf({ USER_DATE: '29/02/01' }), [
      'USER_DATE: "29/02/01" is not a calendar date',
    ]);
    assert.deepEqual(problemsOf({ USER_DATE: '31/04/99' }), [
      'USER_DATE: "31/04/99" is not a calendar date',
    ]);
    assert.deepEqual(problemsOf({ USER_DATE: '00/01/99' }), [
      'USER_DATE: "00/01/99" is not a calendar date',
    ]);
    assert.deepEqual(problemsOf({ USER_DATE: '12/13/99' }), [
      'USER_DATE: "12/13/99" has no month 13',
    ]);
    for (const date of ['1/1/99', '01-01-99', '01/01/1999', '', 'tomorrow']) {
      assert.match(
        problemsOf({ USER_DATE: date })[0] ?? '',
        /is not a date in dd\/mm\/yy form/,
        date,
      );
    }
  });

  it('refuses control characters inside NAME, STREET and CITY, naming each', () => {
    assert.deepEqual(
      problemsOf({ NAME: 'Nul\u0000Byte', STREET: 'Esc\u001b[31m Path', CITY: 'Tab\tTown' }),
      [
        'NAME: contains the control character U+0000 at character 4',
        'STREET: contains the control character U+001B at character 4',
        'CITY: contains the control character U+0009 at character 4',
      ],
    );
    assert.deepEqual(problemsOf({ NAME: '😀😀\u0000' }), [
      'NAME: contains the control character U+0000 at character 3',
    ]);
    for (const text of [
      'Line\nBreak',
      'Carriage\rReturn',
      'Del\u007f',
      'Csi\u009b',
      'Bell\u0007',
    ]) {
      assert.equal(problemsOf({ CITY: text }).length, 1, JSON.stringify(text));
    }
    // Surrounding whitespace, TAB and line breaks included, is trimmed as before; the rest of
    // Unicode (U+2028, U+00A0 inside a value, emoji) is text.
    assert.deepEqual(problemsOf({ NAME: '\tA\u00a0B\r\n', CITY: 'Zoë 😀 \u2028 x' }), []);
  });

  it('reports every problem of a row, not just the first', () => {
    assert.equal(problemsOf({ NAME: '', STATE: 'XX', USER_DATE: '99/99/99' }).length, 3);
  });
});
