import type { FastifyRequest, onRequestHookHandler } from 'fastify';
import { AppError } from '../errors.js';
import { sameSecret } from './same-secret.js';

/**
 * Lets an admin operation through or throws. With ADMIN_TOKEN set, the request must carry
 * `Authorization: Bearer <token>`. Without one, only a direct loopback client may proceed: a
 * request that names a forwarded client came through a proxy (HAProxy on the same host would
 * otherwise make every client look local).
 */
export function authorizeAdmin(request: FastifyRequest, adminToken: string | undefined): void {
  if (adminToken === undefined) {
    if (isDirectLoopbackClient(request)) return;
    throw new AppError(
      'ERR_AUTH_FORBIDDEN',
      'admin operations are accepted only from loopback because ADMIN_TOKEN is not configured on this server',
    );
  }
  const given = /^Bearer +(\S+) *$/i.exec(request.headers.authorization ?? '')?.[1];
  if (given === undefined || !sameSecret(given, adminToken)) {
    throw new AppError(
      'ERR_AUTH_REQUIRED',
      'this is an admin operation: send the header Authorization: Bearer <ADMIN_TOKEN>',
    );
  }
}

/**
 * Checks who is asking before anything else (an onRequest hook): before the body is parsed and
 * the query validated, so an anonymous caller gets 401/403 whatever else is wrong with its
 * request, and learns nothing from a 400 or 415. `when` limits it to the requests of a route
 * that are admin operations.
 */
export function adminOnly(
  adminToken: string | undefined,
  when: (request: FastifyRequest) => boolean = () => true,
): onRequestHookHandler {
  return (request, _reply, done) => {
    try {
      if (when(request)) authorizeAdmin(request, adminToken);
    } catch (error) {
      done(error as Error);
      return;
    }
    done();
  };
}

function isDirectLoopbackClient(request: FastifyRequest): boolean {
  const headers = request.headers;
  if (headers['x-forwarded-for'] !== undefined || headers.forwarded !== undefined) return false;
  const address = request.socket.remoteAddress ?? '';
  return address === '::1' || /^(::ffff:)?127\./.test(address);
}
