/**
 * A private certificate authority and server certificates, made with the openssl command, for
 * the local cluster (`npm run cluster -- --tls`) and the tests. A certificate is written as an
 * ACME client writes it (certbot: fullchain.pem and privkey.pem) and as the one PEM HAProxy
 * reads (the two concatenated), so what is tested is what an operator deploys.
 */
import { execFile } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface CertificateAuthority {
  dir: string;
  /** The root certificate clients trust (`curl --cacert`). */
  rootFile: string;
  /** The intermediate that signs server certificates, as a public CA's does. */
  intermediateFile: string;
  intermediateKeyFile: string;
}

export interface ServerCertificate {
  /** The certificate alone (certbot's cert.pem). */
  certFile: string;
  /** The certificate, then the intermediate (certbot's fullchain.pem). */
  fullchainFile: string;
  /** Its private key (certbot's privkey.pem). */
  privkeyFile: string;
  /** fullchain then privkey in one file: what HAProxy's `crt` (TLS_CERT_FILE) reads. */
  combinedFile: string;
  /** SHA-256 fingerprint of the certificate, as node's tls reports a peer's. */
  fingerprint256: string;
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args[0]} failed: ${stderr.trim() || String(error)}`, {
      cause: error,
    });
  }
}

const serial = () => `0x${randomBytes(16).toString('hex').replace(/^./, '1')}`;

/** A root and an intermediate CA in `dir`, valid for `days`. */
export async function createCertificateAuthority(
  dir: string,
  days = 2,
): Promise<CertificateAuthority> {
  await mkdir(dir, { recursive: true });
  const ca = {
    dir,
    rootFile: join(dir, 'root-ca.pem'),
    intermediateFile: join(dir, 'intermediate-ca.pem'),
    intermediateKeyFile: join(dir, 'intermediate-ca.key'),
  };
  const rootKey = join(dir, 'root-ca.key');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await openssl([
    'req',
    '-x509',
    ...ec,
    '-keyout',
    rootKey,
    '-out',
    ca.rootFile,
    '-days',
    String(days),
    '-subj',
    '/CN=users-api local root CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const request = join(dir, 'intermediate-ca.csr');
  await openssl([
    'req',
    ...ec,
    '-keyout',
    ca.intermediateKeyFile,
    '-out',
    request,
    '-subj',
    '/CN=users-api local intermediate CA',
  ]);
  const extensions = join(dir, 'intermediate-ca.ext');
  await writeFile(
    extensions,
    'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n',
  );
  await openssl([
    'x509',
    '-req',
    '-in',
    request,
    '-CA',
    ca.rootFile,
    '-CAkey',
    rootKey,
    '-set_serial',
    serial(),
    '-days',
    String(days),
    '-extfile',
    extensions,
    '-out',
    ca.intermediateFile,
  ]);
  await Promise.all([rm(request), rm(extensions)]);
  return ca;
}

/**
 * A server certificate for `names` (DNS names or IP addresses) signed by the intermediate, with
 * an RSA 2048 key (the profile allows it and ECDSA P-256; RSA lets the tests offer the weak
 * RSA ciphers too). Written to `dir` as certbot does (cert.pem, fullchain.pem, privkey.pem),
 * and to `combinedFile` in one rename, so a reload never reads half of it. HAProxy reads
 * every file of a `crt` folder as a certificate: keep `combinedFile` out of `dir`.
 */
export async function issueServerCertificate(
  ca: CertificateAuthority,
  names: string[],
  dir: string,
  combinedFile: string,
  days = 2,
): Promise<ServerCertificate> {
  await mkdir(dir, { recursive: true });
  await mkdir(dirname(combinedFile), { recursive: true });
  const files = {
    certFile: join(dir, 'cert.pem'),
    fullchainFile: join(dir, 'fullchain.pem'),
    privkeyFile: join(dir, 'privkey.pem'),
    combinedFile,
  };
  const request = join(dir, 'server.csr');
  await openssl([
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    files.privkeyFile,
    '-out',
    request,
    '-subj',
    `/CN=${names[0]}`,
  ]);
  const extensions = join(dir, 'server.ext');
  const altNames = names.map((name) => (/^[\d.]+$|:/.test(name) ? `IP:${name}` : `DNS:${name}`));
  await writeFile(
    extensions,
    [
      `subjectAltName=${altNames.join(',')}`,
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      '',
    ].join('\n'),
  );
  await openssl([
    'x509',
    '-req',
    '-in',
    request,
    '-CA',
    ca.intermediateFile,
    '-CAkey',
    ca.intermediateKeyFile,
    '-set_serial',
    serial(),
    '-days',
    String(days),
    '-extfile',
    extensions,
    '-out',
    files.certFile,
  ]);
  const leaf = await readFile(files.certFile, 'utf8');
  const fullchain = leaf + (await readFile(ca.intermediateFile, 'utf8'));
  await writeFile(files.fullchainFile, fullchain);
  // Beside its target, for a rename; hidden, as HAProxy skips those in a `crt` folder.
  const next = join(dirname(combinedFile), `.${basename(combinedFile)}.next`);
  await writeFile(next, fullchain + (await readFile(files.privkeyFile, 'utf8')), { mode: 0o600 });
  await rename(next, combinedFile);
  await Promise.all([rm(request), rm(extensions)]);
  return { ...files, fingerprint256: new X509Certificate(leaf).fingerprint256 };
}
