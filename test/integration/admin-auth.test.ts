import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { InjectOptions } from 'fastify';
import { countUsers } from '../../src/db/users-repository.js';
import { createTestApp } from '../helpers/test-app.js';

const TOKEN = 'test-admin-token-0123456789';
const CSV = 'NAME,STREET,CITY,STATE,USER_DATE\nAda,S,C,NY,01/01/01\n';

/**
 * Admin requests with something else wrong too: a bad or unknown query parameter, a body that
 * does not parse, a media type no route accepts. Each must be refused for who sends it first.
 */
const MALFORMED_ADMIN_REQUESTS: { what: string; request: InjectOptions }[] = [
  {
    what: 'an upload with an unknown mode',
    request: {
      method: 'POST',
      url: '/addtosql?mode=merge',
      headers: { 'content-type': 'text/csv' },
      payload: CSV,
    },
  },
  {
    what: 'an upload with an unknown query parameter',
    request: {
      method: 'POST',
      url: '/addtosql?mode=append&colour=red',
      headers: { 'content-type': 'text/csv' },
      payload: CSV,
    },
  },
  {
    what: 'an upload of a media type no import reads',
    request: {
      method: 'POST',
      url: '/addtosql',
      headers: { 'content-type': 'application/xml' },
      payload: '<users/>',
    },
  },
  {
    what: 'an unknown mode without a body',
    request: { method: 'POST', url: '/addtosql?mode=merge' },
  },
  { what: 'a listing with a query', request: { method: 'GET', url: '/admin/backups?all=1' } },
  {
    what: 'a backup request with a query',
    request: { method: 'POST', url: '/admin/backups?now=1' },
  },
  {
    what: 'a backup request with a JSON body that does not parse',
    request: {
      method: 'POST',
      url: '/admin/backups',
      headers: { 'content-type': 'application/json' },
      payload: '{"oops',
    },
  },
  {
    what: 'a backup request with a media type no route reads',
    request: {
      method: 'POST',
      url: '/admin/backups',
      headers: { 'content-type': 'application/xml' },
      payload: '<backup/>',
    },
  },
  {
    what: 'a restore with a query',
    request: {
      method: 'POST',
      url: '/admin/backups/users-20200101T000000.000Z.ndjson.gz/restore?force=1',
    },
  },
  {
    what: 'a restore with a JSON body that does not parse',
    request: {
      method: 'POST',
      url: '/admin/backups/users-20200101T000000.000Z.ndjson.gz/restore',
      headers: { 'content-type': 'application/json' },
      payload: '[',
    },
  },
];

describe('admin routes check who is asking before anything else', () => {
  for (const { what, request } of MALFORMED_ADMIN_REQUESTS) {
    it(`${what}: 401 without the token, 403 from afar without one configured`, async (t) => {
      const withToken = await createTestApp(t, { ADMIN_TOKEN: TOKEN });
      const anonymous = await withToken.app.inject(request);
      assert.equal(anonymous.statusCode, 401, anonymous.body);
      assert.equal(anonymous.headers['content-type'], 'application/problem+json; charset=utf-8');
      assert.equal(anonymous.headers['www-authenticate'], 'Bearer');
      assert.equal(anonymous.json<{ code: string }>().code, 'ERR_AUTH_REQUIRED');
      assert.ok(anonymous.headers['x-request-id']);
      const wrongToken = await withToken.app.inject({
        ...request,
        headers: { ...request.headers, authorization: 'Bearer wrong-token-0123456789' },
      });
      assert.equal(wrongToken.statusCode, 401, wrongToken.body);

      const withoutToken = await createTestApp(t);
      const remote = await withoutToken.app.inject({ ...request, remoteAddress: '203.0.113.9' });
      assert.equal(remote.statusCode, 403, remote.body);
      assert.equal(remote.json<{ code: string }>().code, 'ERR_AUTH_FORBIDDEN');
      const proxied = await withoutToken.app.inject({
        ...request,
        headers: { ...request.headers, 'x-forwarded-for': '203.0.113.9' },
      });
      assert.equal(proxied.statusCode, 403, proxied.body);

      // An admin still hears what else is wrong with the request.
      const admin = await withToken.app.inject({
        ...request,
        headers: { ...request.headers, authorization: `Bearer ${TOKEN}` },
      });
      assert.ok([400, 404, 415].includes(admin.statusCode), `${admin.statusCode} ${admin.body}`);
      assert.equal(await withToken.db.read(countUsers), 0);
    });
  }

  it('POST /addtosql without a body or a mode stays open to anyone (the seed contract)', async (t) => {
    const { app, db } = await createTestApp(t, { ADMIN_TOKEN: TOKEN });
    const first = await app.inject({
      method: 'POST',
      url: '/addtosql',
      remoteAddress: '203.0.113.9',
    });
    assert.equal(first.statusCode, 200, first.body);
    assert.equal(first.json<{ status: string }>().status, 'imported');
    const again = await app.inject({
      method: 'POST',
      url: '/addtosql?mode=if-empty',
      headers: { 'x-forwarded-for': '203.0.113.9' },
    });
    assert.equal(again.statusCode, 200, again.body);
    assert.equal(again.json<{ status: string }>().status, 'skipped');
    // A public request's own mistakes are still a 400 for anyone.
    const unknown = await app.inject({ method: 'POST', url: '/addtosql?colour=red' });
    assert.equal(unknown.statusCode, 400);
    assert.equal(await db.read(countUsers), 1000);
  });
});
