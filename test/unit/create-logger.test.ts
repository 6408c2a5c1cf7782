import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino, type Logger } from 'pino';
import { loadConfig } from '../../src/config/config.js';
import type { RawEnv } from '../../src/config/env.js';
import { createLogger } from '../../src/create-logger.js';

const CWD = '/srv/users-api';

/** The stream pino writes to: SonicBoom on fd 1 for JSON lines, a ThreadStream for a transport. */
function streamOf(logger: Logger): { constructor: { name: string }; fd?: number; end(): void } {
  return (logger as unknown as Record<symbol, ReturnType<typeof streamOf>>)[
    pino.symbols.streamSym
  ]!;
}

function loggerFor(env: RawEnv, stdoutIsTty?: boolean): Logger {
  return createLogger(loadConfig(env, CWD), stdoutIsTty === undefined ? {} : { stdoutIsTty });
}

describe('createLogger', () => {
  it('honours LOG_LEVEL, info by default', () => {
    assert.equal(loggerFor({}).level, 'info');
    for (const level of ['debug', 'warn', 'silent'] as const) {
      assert.equal(loggerFor({ LOG_LEVEL: level }).level, level);
    }
  });

  it('pretty-prints through pino-pretty in development on a terminal', (t) => {
    const stream = streamOf(loggerFor({ NODE_ENV: 'development' }, true));
    // The transport runs in a worker thread; end it so the test process can exit.
    t.after(() => stream.end());
    assert.equal(stream.constructor.name, 'ThreadStream');
  });

  it('writes JSON lines to stdout otherwise', () => {
    const cases: [RawEnv, boolean | undefined][] = [
      [{ NODE_ENV: 'development' }, false],
      [{ NODE_ENV: 'development' }, undefined],
      [{ NODE_ENV: 'production' }, true],
      [{ NODE_ENV: 'test' }, true],
    ];
    for (const [env, stdoutIsTty] of cases) {
      const stream = streamOf(loggerFor(env, stdoutIsTty));
      assert.equal(stream.constructor.name, 'SonicBoom', `${env.NODE_ENV} tty=${stdoutIsTty}`);
      assert.equal(stream.fd, 1);
    }
  });
});
