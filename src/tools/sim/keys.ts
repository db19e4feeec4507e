// Keys the simulator registers and hands out: a Google service account's key file and a
// Microsoft app's certificate, both RSA 2048 as the providers issue them.
import {
  createHash,
  createPublicKey,
  generateKeyPair,
  randomBytes,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { promisify } from 'node:util';

const generateRsa = promisify(generateKeyPair);

export interface PublicKeyInfo {
  key: KeyObject;
  /** base64url SHA-1 of the certificate (the `x5t` JWT header); only when a certificate was given */
  x5t?: string;
  /** base64url SHA-256 of the certificate (`x5t#S256`) */
  x5tS256?: string;
}

/** An RSA public key from a PEM certificate or public key; throws naming `field`. */
export function publicKeyFromPem(pem: string, field: string): PublicKeyInfo {
  let info: PublicKeyInfo;
  try {
    if (pem.includes('BEGIN CERTIFICATE')) {
      const cert = new X509Certificate(pem);
      info = {
        key: cert.publicKey,
        x5t: createHash('sha1').update(cert.raw).digest('base64url'),
        x5tS256: createHash('sha256').update(cert.raw).digest('base64url'),
      };
    } else {
      info = { key: createPublicKey(pem) };
    }
  } catch (err) {
    throw new Error(`${field}: not a PEM certificate or public key (${(err as Error).message})`);
  }
  if (info.key.asymmetricKeyType !== 'rsa') {
    throw new Error(`${field}: must be an RSA key (RS256), got ${info.key.asymmetricKeyType}`);
  }
  return info;
}

/** The JSON key file Google Cloud gives for a service account key (fields its libraries read). */
export interface ServiceAccountKeyFile {
  type: 'service_account';
  project_id: string;
  private_key_id: string;
  private_key: string;
  client_email: string;
  client_id: string;
  auth_uri: string;
  token_uri: string;
}

export interface GeneratedServiceAccountKey {
  keyFile: ServiceAccountKeyFile;
  publicKeyPem: string;
}

export async function generateServiceAccountKey(opts: {
  clientEmail: string;
  clientId: string;
  tokenUri: string;
  authUri: string;
}): Promise<GeneratedServiceAccountKey> {
  const { publicKey, privateKey } = await generateRsa('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const domain = opts.clientEmail.slice(opts.clientEmail.indexOf('@') + 1);
  return {
    publicKeyPem: publicKey,
    keyFile: {
      type: 'service_account',
      project_id: domain.split('.')[0] || 'sim-project',
      private_key_id: randomBytes(20).toString('hex'),
      private_key: privateKey,
      client_email: opts.clientEmail,
      client_id: opts.clientId,
      auth_uri: opts.authUri,
      token_uri: opts.tokenUri,
    },
  };
}

/** A self-signed certificate and its private key, as an admin uploads to an Azure app registration. */
export async function generateAppCertificate(
  clientId: string,
): Promise<{ certificatePem: string; privateKeyPem: string }> {
  const { generate } = await import('selfsigned');
  const pems = await generate([{ name: 'commonName', value: `sim-app-${clientId}` }], {
    keyType: 'rsa',
    keySize: 2048,
    algorithm: 'sha256',
    notAfterDate: new Date(Date.now() + 2 * 365 * 86400_000),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true },
      { name: 'extKeyUsage', clientAuth: true },
    ],
  });
  return { certificatePem: pems.cert, privateKeyPem: pems.private };
}

/** Google's service account client ids are 21 digits. */
export function serviceAccountClientId(): string {
  let id = String(1 + (randomBytes(1)[0]! % 9));
  while (id.length < 21) id += String(randomBytes(1)[0]! % 10);
  return id;
}
