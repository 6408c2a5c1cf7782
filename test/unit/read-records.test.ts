import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { AppError } from '../../src/errors.js';
import { decodeUtf8 } from '../../src/importer/decode-utf8.js';
import { fileImportSource, type ImportFormat } from '../../src/importer/import-source.js';
import { readCsvRecords } from '../../src/importer/read-csv-records.js';
import { readJsonRecords } from '../../src/importer/read-json-records.js';
import { readNdjsonRecords } from '../../src/importer/read-ndjson-records.js';
import type { SourceRecord } from '../../src/importer/source-record.js';
import { fixture } from '../helpers/paths.js';

const READERS = { csv: readCsvRecords, json: readJsonRecords, ndjson: readNdjsonRecords };

async function read(name: string, format: ImportFormat = 'csv'): Promise<SourceRecord[]> {
  const records: SourceRecord[] = [];
  for await (const batch of READERS[format](
    decodeUtf8(fileImportSource(fixture(name), format).open()),
  )) {
    records.push(...batch);
  }
  return records;
}

const duane = {
  NAME: 'Duane Adams',
  STREET: 'Hojzi Path',
  CITY: 'Zurmubku',
  STATE: 'NY',
  USER_DATE: '08/08/43',
};
const ruby = {
  NAME: 'Ruby Hampton',
  STREET: 'Seime Plaza',
  CITY: 'Ikduju',
  STATE: 'KS',
  USER_DATE: '16/09/86',
};

async function assertFileError(name: string, format: ImportFormat, message: RegExp) {
  await assert.rejects(read(name, format), (error: unknown) => {
    assert.ok(error instanceof AppError, String(error));
    assert.equal(error.code, 'ERR_IMPORT_BAD_FILE');
    assert.match(error.message, message);
    return true;
  });
}

describe('CSV records', () => {
  for (const name of ['bom.csv', 'crlf.csv', 'crlf-header-lf-rows.csv']) {
    it(`reads ${name}`, async () => {
      assert.deepEqual(await read(`csv/${name}`), [
        { location: 'line 2', raw: duane },
        { location: 'line 3', raw: ruby },
      ]);
    });
  }

  it('keeps quoted commas and doubled quotes', async () => {
    assert.deepEqual(await read('csv/quoted-comma.csv'), [
      { location: 'line 2', raw: { ...duane, NAME: 'Adams, Duane', STREET: 'Hojzi "Old" Path' } },
    ]);
  });

  it('keeps line breaks inside quotes and counts physical lines after them', async () => {
    const records = await read('csv/embedded-newline.csv');
    assert.deepEqual(records[0], {
      location: 'line 2',
      raw: { ...duane, STREET: 'Hojzi Path\nApt 4' },
    });
    assert.equal(records[1]!.location, 'line 4');
  });

  it('matches columns by name in any order and case', async () => {
    const [record] = await read('csv/reordered-lowercase-padded.csv');
    assert.deepEqual(record, {
      location: 'line 2',
      raw: {
        NAME: '  Zoë Ødegård ',
        STREET: 'Hojzi Path',
        CITY: '  Zurmubku',
        STATE: ' ny ',
        USER_DATE: '  08/08/43 ',
      },
    });
  });

  it('reports rows with the wrong number of fields by physical line, skipping blank lines', async () => {
    const records = await read('csv/several-bad-rows.csv');
    assert.deepEqual(
      records.map((r) => r.location),
      ['line 2', 'line 3', 'line 6'],
    );
    assert.deepEqual(records[0], {
      location: 'line 2',
      problem: 'expected 5 fields (NAME,STREET,CITY,STATE,USER_DATE), found 4',
    });
  });

  it('refuses a missing column', async () => {
    await assertFileError(
      'csv/missing-column.csv',
      'csv',
      /^line 1: bad header: missing column USER_DATE; expected the columns NAME,STREET,CITY,STATE,USER_DATE/,
    );
  });

  it('refuses an extra column', async () => {
    await assertFileError(
      'csv/extra-column.csv',
      'csv',
      /^line 1: bad header: unknown column "EMAIL"/,
    );
  });

  it('refuses an empty file', async () => {
    await assertFileError(
      'csv/empty.csv',
      'csv',
      /^the file is empty: expected a header line NAME,STREET,CITY,STATE,USER_DATE$/,
    );
  });

  it('reads a header-only file as no records', async () => {
    assert.deepEqual(await read('csv/header-only.csv'), []);
  });

  it('refuses a file that is not UTF-8, naming the line', async () => {
    await assertFileError(
      'csv/latin1.csv',
      'csv',
      /^line 2: the file is not valid UTF-8 text \(invalid byte at or near offset 36\)/,
    );
  });

  it('refuses binary garbage', async () => {
    await assertFileError('csv/binary.csv', 'csv', /not valid UTF-8/);
  });

  it('refuses an unclosed quote', async () => {
    await assertFileError(
      'csv/unclosed-quote.csv',
      'csv',
      /^line 2: malformed CSV: a quoted field is never closed$/,
    );
  });
});

describe('records that never end', () => {
  /** 4 MB in 256 KB chunks after `head`: a stream, as a large file would arrive. */
  const endless = (head: string, filler: string): AsyncIterable<string> =>
    Readable.from([head, ...Array<string>(16).fill(filler.repeat(262_144 / filler.length))]);

  async function assertRefused(records: AsyncGenerator<SourceRecord[]>, message: RegExp) {
    await assert.rejects(
      (async () => {
        for await (const batch of records) void batch;
      })(),
      (error: unknown) =>
        error instanceof AppError &&
        error.code === 'ERR_IMPORT_BAD_FILE' &&
        message.test(error.message),
    );
  }

  it('refuses a CSV line without a line break once it outgrows any record', async () => {
    await assertRefused(
      readCsvRecords(endless('NAME,STREET,CITY,STATE,USER_DATE\n', 'x')),
      /^line 2: malformed CSV: a record runs over 65536 characters: a line break or a closing quote is missing$/,
    );
  });

  it('refuses a CSV quote that is never closed before the rest of the file', async () => {
    const row = 'Duane Adams,Hojzi Path,Zurmubku,NY,08/08/43\n';
    await assertRefused(
      readCsvRecords(endless(`NAME,STREET,CITY,STATE,USER_DATE\n${row}"Open,`, row)),
      /^line 3: malformed CSV: a record runs over/,
    );
  });

  it('refuses an NDJSON line that outgrows any user object', async () => {
    await assertRefused(
      readNdjsonRecords(endless('{"NAME":"Duane Adams"}\n{"NAME":"', 'x')),
      /^item 2: a line runs over 65536 characters/,
    );
  });

  it('refuses an NDJSON line over the limit even when it arrives whole in one chunk', async () => {
    const line = `{"NAME":"${'x'.repeat(70_000)}"}`;
    await assertRefused(
      readNdjsonRecords(Readable.from([`{"NAME":"Duane Adams"}\n${line}\n${line}\n`])),
      /^item 2: a line runs over 65536 characters/,
    );
  });

  /** Like `endless`, counting the characters the reader pulled before it stopped. */
  function counted(head: string, filler: string) {
    const source = { pulled: 0, text: undefined as unknown as AsyncIterable<string> };
    source.text = (async function* () {
      for await (const chunk of endless(head, filler)) {
        source.pulled += chunk.length;
        yield chunk;
      }
    })();
    return source;
  }

  for (const [name, head, filler, message] of [
    ['nested arrays', '[', '[', /^item 1: nested deeper than a user object/],
    ['nested objects', '[{"NAME":', '{"NAME":', /^item 1: nested deeper than a user object/],
    [
      'a string item',
      '[{"NAME":"Duane Adams"},"',
      'x',
      /^item 2: longer than 65536 characters: a user object is far smaller$/,
    ],
    ['a string value', '[{"NAME":"', 'x', /^item 1: longer than 65536 characters/],
    ['a number', '[{"NAME":1', '1', /^item 1: longer than 65536 characters/],
    ['an object with endless keys', '[{', '"NAME":"x",', /^item 1: longer than 65536/],
    ['an array item', '[[', '"x",', /^item 1: longer than 65536 characters/],
  ] as const) {
    it(`refuses a JSON item that never ends (${name}) within the first chunk`, async () => {
      const source = counted(head, filler);
      await assertRefused(readJsonRecords(source.text), message);
      assert.ok(source.pulled <= 300_000, `read ${source.pulled} characters of 4 MB`);
    });
  }
});

describe('JSON and NDJSON records', () => {
  it('reads an array of objects, keys in any case', async () => {
    assert.deepEqual(await read('json/users.json', 'json'), [
      { location: 'item 1', raw: duane },
      {
        location: 'item 2',
        raw: {
          NAME: 'Zoë Ødegård',
          STREET: 'Seime Plaza',
          CITY: 'Ikduju',
          STATE: 'ks',
          USER_DATE: '16/09/86',
        },
      },
    ]);
  });

  it('reports items that are not user objects', async () => {
    const records = await read('json/bad-items.json', 'json');
    assert.deepEqual(records.slice(1), [
      { location: 'item 2', problem: 'USER_DATE: must be a string' },
      {
        location: 'item 3',
        problem: 'expected an object with keys NAME, STREET, CITY, STATE, USER_DATE',
      },
      { location: 'item 4', problem: 'USER_DATE: missing' },
    ]);
  });

  it('refuses a top-level value that is not an array', async () => {
    await assertFileError(
      'json/not-array.json',
      'json',
      /^invalid JSON: .*expected a JSON array of user objects$/,
    );
  });

  it('refuses truncated JSON', async () => {
    await assertFileError(
      'json/truncated.json',
      'json',
      /^invalid JSON: the file ends inside item 1; expected a JSON array of user objects$/,
    );
  });

  const readJson = async (chunks: string[]) => {
    const records: SourceRecord[] = [];
    for await (const batch of readJsonRecords(Readable.from(chunks))) records.push(...batch);
    return records;
  };

  it('reads the same records whatever the chunks, escapes and astral characters included', async () => {
    const text =
      '[ {"NAME":"Zo\\u00eb \\"Q\\"","STREET":"😀 Path","CITY":"","STATE":"NY","USER_DATE":"08/08/43"},' +
      ' 12, null, [], {"NAME":"A","NAME":"B","USER_DATE":1.5e3,"x":true}, {} ]';
    const whole = await readJson([text]);
    assert.deepEqual(whole, [
      {
        location: 'item 1',
        raw: { NAME: 'Zoë "Q"', STREET: '😀 Path', CITY: '', STATE: 'NY', USER_DATE: '08/08/43' },
      },
      ...[2, 3, 4].map((item) => ({
        location: `item ${item}`,
        problem: 'expected an object with keys NAME, STREET, CITY, STATE, USER_DATE',
      })),
      {
        location: 'item 5',
        problem:
          'NAME: given twice; USER_DATE: must be a string; unknown key "x"; STREET: missing; ' +
          'CITY: missing; STATE: missing',
      },
      {
        location: 'item 6',
        problem:
          'NAME: missing; STREET: missing; CITY: missing; STATE: missing; USER_DATE: missing',
      },
    ]);
    assert.deepEqual(await readJson([...text]), whole);
    assert.deepEqual(
      await readJson([text.slice(0, 37), text.slice(37, 38), text.slice(38)]),
      whole,
    );
  });

  it('names what is missing in an empty or unfinished file', async () => {
    for (const [text, message] of [
      ['  \n', /^invalid JSON: the file holds no JSON value; expected a JSON array/],
      ['[{"NAME":"a"}, ', /^invalid JSON: the file ends before the array is closed; /],
      ['{"NAME":"a"}', /^invalid JSON: the top-level value is not an array; /],
      ['[] []', /^invalid JSON: Parser cannot parse input: unexpected characters; /],
    ] as const) {
      await assert.rejects(readJson([text]), (error: unknown) => {
        assert.ok(error instanceof AppError && error.code === 'ERR_IMPORT_BAD_FILE', text);
        assert.match(error.message, message);
        return true;
      });
    }
  });

  it('reads NDJSON with CRLF and blank lines, item N being line N', async () => {
    assert.deepEqual(await read('json/users.ndjson', 'ndjson'), [
      { location: 'item 1', raw: duane },
      { location: 'item 3', raw: ruby },
    ]);
  });

  it('reports NDJSON lines that are not JSON and keeps reading', async () => {
    const records = await read('json/bad-lines.ndjson', 'ndjson');
    assert.equal(records.length, 3);
    assert.match((records[1] as { problem: string }).problem, /^invalid JSON: /);
  });
});
