// A Google service account JSON key file, checked field by field. Errors name the file and the
// field and never quote the file (it holds a private key).
import fs from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import { CredentialError } from './errors.js';
import { rsaPrivateKey } from './jwt.js';

export interface ServiceAccountKey {
  /** the JWT `iss` */
  clientEmail: string;
  /** the numeric client id that domain-wide delegation is granted to (for hints) */
  clientId?: string;
  /** the JWT header's `kid` */
  privateKeyId?: string;
  privateKey: KeyObject;
  /** the JWT `aud` and where the assertion is posted */
  tokenUri: string;
}

export async function readServiceAccountKey(file: string): Promise<ServiceAccountKey> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new CredentialError(
      file,
      'keyFile',
      `cannot read: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  return parseServiceAccountKey(text, file);
}

/** `source` names the file in errors. */
export function parseServiceAccountKey(text: string, source: string): ServiceAccountKey {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // the parser's message quotes the text: not repeated
    throw new CredentialError(source, 'keyFile', 'not valid JSON');
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) {
    throw new CredentialError(source, 'keyFile', 'not a JSON object');
  }
  const k = json as Record<string, unknown>;
  if (k.type !== 'service_account') {
    const got =
      k.type === undefined
        ? 'missing'
        : k.type === 'authorized_user'
          ? '"authorized_user" is a user credential, not a service account key (IAM > Service accounts > Keys)'
          : `must be "service_account", got ${JSON.stringify(String(k.type).slice(0, 40))}`;
    throw new CredentialError(source, 'type', got);
  }
  const email = k.client_email;
  if (typeof email !== 'string' || !/^[^\s@]+@[^\s@]+$/.test(email)) {
    throw new CredentialError(
      source,
      'client_email',
      email === undefined ? 'missing' : 'not an email address',
    );
  }
  const privateKey = rsaPrivateKey(k.private_key, source, 'private_key');
  const optional = (field: string): string | undefined => {
    const v = k[field];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '')
      throw new CredentialError(source, field, 'must be a non-empty string');
    return v;
  };
  const privateKeyId = optional('private_key_id');
  const clientId = optional('client_id');
  const tokenUri = k.token_uri;
  if (typeof tokenUri !== 'string') throw new CredentialError(source, 'token_uri', 'missing');
  if (!isTokenUrl(tokenUri)) {
    throw new CredentialError(source, 'token_uri', 'must be an https URL (or http on 127.0.0.1)');
  }
  return {
    clientEmail: email,
    ...(clientId !== undefined ? { clientId } : {}),
    ...(privateKeyId !== undefined ? { privateKeyId } : {}),
    privateKey,
    tokenUri,
  };
}

/** The assertion is a bearer credential for an hour: it goes over TLS, or stays on this host. */
function isTokenUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return u.protocol === 'https:' || (u.protocol === 'http:' && /^127\.\d+\.\d+\.\d+$/.test(u.hostname));
  } catch {
    return false;
  }
}
