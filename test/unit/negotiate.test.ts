import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { negotiateEncoding, negotiateFormat } from '../../src/http/negotiate.js';
import { createUsersWriter } from '../../src/http/format-users.js';

describe('negotiateFormat', () => {
  it('defaults to JSON, and for Accept headers that name none of the formats', () => {
    for (const accept of [undefined, '', '*/*', 'text/html,application/xhtml+xml,*/*;q=0.8']) {
      assert.equal(negotiateFormat(accept), 'json', String(accept));
    }
    assert.equal(negotiateFormat('image/png'), 'json');
  });

  it('picks NDJSON or CSV by name, wildcard and quality', () => {
    assert.equal(negotiateFormat('application/x-ndjson'), 'ndjson');
    assert.equal(negotiateFormat('text/csv'), 'csv');
    assert.equal(negotiateFormat('text/*'), 'csv');
    assert.equal(negotiateFormat('text/csv;q=0.9, application/json;q=0.5'), 'csv');
    assert.equal(negotiateFormat('text/csv;q=0.5, application/json'), 'json');
    assert.equal(negotiateFormat('application/json;q=0, text/csv;q=0.1'), 'csv');
  });
});

describe('negotiateEncoding', () => {
  it('prefers br, then gzip, and honours q=0', () => {
    assert.equal(negotiateEncoding('gzip, deflate, br'), 'br');
    assert.equal(negotiateEncoding('gzip'), 'gzip');
    assert.equal(negotiateEncoding('br;q=0, gzip'), 'gzip');
    assert.equal(negotiateEncoding('*'), 'br');
    assert.equal(negotiateEncoding('identity'), undefined);
    assert.equal(negotiateEncoding(undefined), undefined);
  });
});

describe('createUsersWriter', () => {
  const users = [
    { id: 7, name: 'A "B"', street: 'S, 1', city: 'C', state: 'NY', userDate: '01/01/01' },
    { id: 8, name: 'Zoë', street: 'T', city: 'D\nE', state: 'KS', userDate: '29/02/00' },
  ];
  const write = (writer: ReturnType<typeof createUsersWriter>) =>
    writer.head +
    writer.rows(users.slice(0, 1), true) +
    writer.rows(users.slice(1), false) +
    writer.tail;

  it('writes the JSON contract page by page', () => {
    const text = write(createUsersWriter('json'));
    assert.equal(
      text,
      '[{"NAME":"A \\"B\\"","STREET":"S, 1","CITY":"C","STATE":"NY","USER_DATE":"01/01/01"},' +
        '{"NAME":"Zoë","STREET":"T","CITY":"D\\nE","STATE":"KS","USER_DATE":"29/02/00"}]',
    );
    assert.equal(createUsersWriter('json').head + createUsersWriter('json').tail, '[]');
  });

  it('writes chosen columns in the canonical order, NDJSON and quoted CSV', () => {
    assert.equal(
      write(createUsersWriter('ndjson', ['ID', 'CITY'])),
      '{"ID":7,"CITY":"C"}\n{"ID":8,"CITY":"D\\nE"}\n',
    );
    assert.equal(
      write(createUsersWriter('csv')),
      'NAME,STREET,CITY,STATE,USER_DATE\r\n"A ""B""","S, 1",C,NY,01/01/01\r\nZoë,T,"D\nE",KS,29/02/00\r\n',
    );
  });
});
