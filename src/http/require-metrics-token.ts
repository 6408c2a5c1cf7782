import type { FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import { sameSecret } from './same-secret.js';

/**
 * Throws the 401 problem unless the request carries METRICS_TOKEN, as
 * `Authorization: Bearer <token>` or as the password of HTTP Basic (any user name: a browser
 * cannot send a Bearer token on a page load or an EventSource, but prompts for Basic); with no
 * token configured every caller passes. Guards what only monitoring may read (`/metrics`, the
 * health JSON, the status page and its feed): the app sees every caller through HAProxy, so it
 * cannot go by address.
 */
export function requireMetricsToken(request: FastifyRequest, metricsToken: string | undefined) {
  if (metricsToken === undefined) return;
  const given = givenToken(request.headers.authorization ?? '');
  if (given === undefined || !sameSecret(given, metricsToken)) {
    throw new AppError(
      'ERR_AUTH_METRICS_TOKEN_REQUIRED',
      'send the header Authorization: Bearer <METRICS_TOKEN>, or HTTP Basic with METRICS_TOKEN as the password',
    );
  }
}

function givenToken(authorization: string): string | undefined {
  const bearer = /^Bearer +(\S+) *$/i.exec(authorization)?.[1];
  if (bearer !== undefined) return bearer;
  const basic = /^Basic +([A-Za-z0-9+/]+=*) *$/i.exec(authorization)?.[1];
  if (basic === undefined) return undefined;
  const credentials = Buffer.from(basic, 'base64').toString('utf8');
  const colon = credentials.indexOf(':');
  return colon === -1 ? undefined : credentials.slice(colon + 1);
}
