// Registering clients and service accounts when the simulator must make the keys: a certificate
// for an app's private_key_jwt, a key file for a service account (key generation is async).
import { parseClient, type Directory } from './directory.js';
import { generateAppCertificate, generateServiceAccountKey, serviceAccountClientId } from './keys.js';
import type {
  SimClientInput,
  SimRegisteredClient,
  SimRegisteredServiceAccount,
  SimServiceAccountInput,
} from './types.js';

function asObject(input: unknown, field: string): Record<string, unknown> {
  if (!input || typeof input !== 'object' || Array.isArray(input))
    throw new Error(`${field}: must be a JSON object`);
  return input as Record<string, unknown>;
}

export async function registerClient(
  directory: Directory,
  input: SimClientInput | unknown,
): Promise<SimRegisteredClient> {
  const o = { ...asObject(input, 'client') };
  const generate = o.generateCertificate;
  delete o.generateCertificate;
  if (generate !== undefined && typeof generate !== 'boolean')
    throw new Error('client.generateCertificate: must be true or false');
  let generated: { certificatePem: string; privateKeyPem: string } | undefined;
  if (generate) {
    if (o.certificate !== undefined)
      throw new Error('client: give "certificate" or "generateCertificate", not both');
    parseClient(o, 'client'); // the other fields are checked before the key is made

    generated = await generateAppCertificate(String(o.clientId));
    o.certificate = generated.certificatePem;
  }
  const client = directory.registerClient(o, 'client');
  return {
    clientId: client.clientId,
    tenant: client.tenant ?? null,
    ...(client.key?.x5t ? { x5t: client.key.x5t } : {}),
    ...(generated ? { certificate: generated.certificatePem, privateKey: generated.privateKeyPem } : {}),
  };
}

export async function registerServiceAccount(
  directory: Directory,
  input: SimServiceAccountInput | unknown,
  urls: { tokenUri: string; authUri: string },
): Promise<SimRegisteredServiceAccount> {
  const o = asObject(input, 'serviceAccount');
  if (o.publicKey !== undefined) {
    const sa = directory.registerServiceAccount(o);
    return { clientEmail: sa.clientEmail, clientId: sa.clientId, privateKeyId: sa.privateKeyId };
  }
  if (o.privateKeyId !== undefined)
    throw new Error('serviceAccount.privateKeyId: only with publicKey (a generated key gets its own id)');
  let clientEmail = o.clientEmail;
  for (let n = directory.serviceAccounts.size + 1; clientEmail === undefined; n++) {
    const candidate = `svc-${n}@sim-project.iam.gserviceaccount.com`;
    if (!directory.serviceAccount(candidate)) clientEmail = candidate;
  }
  const clientId = o.clientId ?? serviceAccountClientId();
  const { keyFile, publicKeyPem } = await generateServiceAccountKey({
    clientEmail: String(clientEmail),
    clientId: String(clientId),
    ...urls,
  });
  const sa = directory.registerServiceAccount({
    ...o,
    clientEmail,
    clientId,
    publicKey: publicKeyPem,
    privateKeyId: keyFile.private_key_id,
  });
  return { clientEmail: sa.clientEmail, clientId: sa.clientId, privateKeyId: sa.privateKeyId, keyFile };
}
