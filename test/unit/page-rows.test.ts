import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { idsBefore, indexPageRows, spliceRows } from '../../src/http/page-rows.js';

/** A page as users-json renders it: the contract's objects joined by commas. */
const objectOf = (id: number, street = `${id} Main St`) =>
  JSON.stringify({
    NAME: `User ${id}`,
    STREET: street,
    CITY: 'C',
    STATE: 'NY',
    USER_DATE: '1/1/01',
  });
const pageOf = (users: ReadonlyMap<number, string>) =>
  Buffer.from(
    [...users.keys()]
      .sort((a, b) => a - b)
      .map((id) => users.get(id))
      .join(','),
  );

describe('page rows', () => {
  it('finds every object of a page, even with boundary-like text inside a value', () => {
    const users = new Map([
      [3, objectOf(3, 'a },{"NAME": b')],
      [5, objectOf(5)],
      [9, objectOf(9, '\\",{"NAME":')],
    ]);
    const bytes = pageOf(users);
    const rows = indexPageRows(bytes, [3, 5, 9]);
    assert.deepEqual(
      rows.starts.map((start, index) =>
        bytes.subarray(start, start + users.get(rows.ids[index]!)!.length).toString(),
      ),
      [...users.values()],
    );
    assert.throws(() => indexPageRows(bytes, [3, 5]), /a page of 2 users holds 3 objects/);
  });

  it('gives the bytes of a fresh render after creates, updates and deletes in any order', () => {
    let seed = 11;
    const random = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    const users = new Map<number, string>();
    for (let id = 1; id <= 40; id += 1) if (random(3) > 0) users.set(id, objectOf(id));
    let bytes: Buffer = pageOf(users);
    let rows = indexPageRows(
      bytes,
      [...users.keys()].sort((a, b) => a - b),
    );
    for (let step = 0; step < 200; step += 1) {
      const changed = new Map<number, Buffer | undefined>();
      for (let count = 1 + random(4); count > 0; count -= 1) {
        const id = 1 + random(45);
        const object = random(3) === 0 ? undefined : objectOf(id, `street ${step}`);
        if (object === undefined) users.delete(id);
        else users.set(id, object);
        changed.set(id, object === undefined ? undefined : Buffer.from(object));
      }
      ({ bytes, rows } = spliceRows(bytes, rows, changed));
      const expected = pageOf(users);
      assert.equal(bytes.toString(), expected.toString(), `step ${step}`);
      assert.deepEqual(
        rows,
        indexPageRows(
          expected,
          [...users.keys()].sort((a, b) => a - b),
        ),
      );
    }
  });

  it('empties a page whose last user goes, and fills an empty one', () => {
    const one = Buffer.from(objectOf(7));
    const emptied = spliceRows(one, indexPageRows(one, [7]), new Map([[7, undefined]]));
    assert.equal(emptied.bytes.length, 0);
    assert.deepEqual(emptied.rows, { ids: [], starts: [] });
    const filled = spliceRows(
      emptied.bytes,
      emptied.rows,
      new Map([[8, Buffer.from(objectOf(8))]]),
    );
    assert.equal(filled.bytes.toString(), objectOf(8));
  });

  it('tells the ids a page held before a change from its ids now and its object count', () => {
    const changed = (...ids: number[]) => new Set(ids);
    // One changed id: an update (there then and now), a create (now only), a delete (then only).
    assert.deepEqual(idsBefore([1, 4, 9], changed(4), 3), [1, 4, 9]);
    assert.deepEqual(idsBefore([1, 4, 9], changed(4), 2), [1, 9]);
    assert.deepEqual(idsBefore([1, 9], changed(4), 3), [1, 4, 9]);
    assert.deepEqual(idsBefore([1, 9], changed(4), 2), [1, 9]);
    // Several: known when all or none were there; a mix is not told apart.
    assert.deepEqual(idsBefore([2, 5], changed(3, 7), 4), [2, 3, 5, 7]);
    assert.deepEqual(idsBefore([2, 3, 5, 7], changed(3, 7), 2), [2, 5]);
    assert.equal(idsBefore([2, 3, 5], changed(3, 7), 3), undefined);
    // A count no combination gives: the page is rendered instead.
    assert.equal(idsBefore([1, 9], changed(4), 5), undefined);
  });
});
