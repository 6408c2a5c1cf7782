import type { FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import { sameSecret } from './same-secret.js';

/**
 * Throws the 401 problem unless the request carries `Authorization: Bearer <METRICS_TOKEN>`;
 * with no token configured every caller passes. Guards what only monitoring may read (`/metrics`
 * and the health JSON): the app sees every caller through HAProxy, so it cannot go by address.
 */
export function requireMetricsToken(request: FastifyRequest, metricsToken: string | undefined) {
  if (metricsToken === undefined) return;
  const given = /^Bearer +(\S+) *$/i.exec(request.headers.authorization ?? '')?.[1];
  if (given === undefined || !sameSecret(given, metricsToken)) {
    throw new AppError(
      'ERR_AUTH_METRICS_TOKEN_REQUIRED',
      'send the header Authorization: Bearer <METRICS_TOKEN>',
    );
  }
}
