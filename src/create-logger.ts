import { pino, type Logger, type LoggerOptions } from 'pino';
import type { Config } from './config/config.js';

/**
 * JSON lines on stdout; secrets are redacted even if a header is ever logged. Pretty-printed
 * only in development on a terminal, and only where pino-pretty (a dev dependency) is installed.
 */
export function createLogger(config: Config, options: { stdoutIsTty?: boolean } = {}): Logger {
  const base: LoggerOptions = {
    level: config.logLevel,
    base: { server: config.serverName },
    redact: [
      'req.headers.authorization',
      'headers.authorization',
      'req.headers.cookie',
      'headers.cookie',
    ],
  };
  if (config.nodeEnv === 'development' && options.stdoutIsTty === true && canLoad('pino-pretty')) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true } } });
  }
  return pino(base);
}

function canLoad(specifier: string): boolean {
  try {
    import.meta.resolve(specifier);
    return true;
  } catch {
    // Not installed (a production install has no dev dependencies): plain JSON it is.
    return false;
  }
}
