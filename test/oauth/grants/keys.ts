// Test credentials made on the fly: an RSA key with a self-signed certificate, and a Google-style
// service account key file. Nothing here is a real credential.
import crypto from 'node:crypto';

export interface TestCert {
  keyPem: string;
  certPem: string;
  publicKey: crypto.KeyObject;
}

export async function rsaCert(cn = 'xoauth2-proxy test app'): Promise<TestCert> {
  const { generate } = await import('selfsigned');
  const pems = await generate([{ name: 'commonName', value: cn }], { keySize: 2048, algorithm: 'sha256' });
  return { keyPem: pems.private, certPem: pems.cert, publicKey: crypto.createPublicKey(pems.private) };
}

export function rsaKeyPem(bits = 2048): string {
  return crypto
    .generateKeyPairSync('rsa', { modulusLength: bits })
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();
}

export const SA_EMAIL = 'proxy-sender@fake-project.iam.gserviceaccount.com';
export const SA_CLIENT_ID = '100000000000000000001';
export const SA_KEY_ID = 'fake-key-id-0001';

export function serviceAccountJson(
  tokenUri: string,
  privateKeyPem: string,
  over: Record<string, unknown> = {},
) {
  return JSON.stringify({
    type: 'service_account',
    project_id: 'fake-project',
    private_key_id: SA_KEY_ID,
    private_key: privateKeyPem,
    client_email: SA_EMAIL,
    client_id: SA_CLIENT_ID,
    auth_uri: 'https://accounts.google.com/o/oauth2/auth',
    token_uri: tokenUri,
    ...over,
  });
}
