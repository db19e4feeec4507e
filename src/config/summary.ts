// The one-screen summary printed by `check` (and usable at start-up).

import { formatHostPort } from '../shared/net.js';
import { formatDuration } from './duration.js';
import { providerUrl } from './providers.js';
import type { Config, ProviderConfig } from './types.js';

/** How the provider's accounts get tokens, in a few words (no secrets). */
function authText(p: ProviderConfig): string {
  const a = p.auth;
  if (a?.type === 'client_credentials')
    return `app-only: client credentials of ${a.clientId} (${a.certificate ? 'certificate' : 'client secret'}), tenant ${a.tenant ?? p.tenant}`;
  if (a?.type === 'service_account') return `service account (domain-wide delegation), key ${a.keyFile}`;
  const ways = [
    p.authorizeUrl ? 'browser' : '',
    p.deviceAuthorizationUrl && p.name !== 'google' ? 'device' : '',
  ].filter(Boolean);
  return (
    'refresh tokens' +
    (p.oauthClient ? `, OAuth client ${p.oauthClient.clientId}` : '') +
    (ways.length && providerUrl(p, 'authorizeUrl') ? ` (accounts authorize: ${ways.join(', ')})` : '')
  );
}

export function summarizeConfig(config: Config, warnings: readonly string[] = []): string {
  const lines: string[] = [];
  const s = config.smtp;
  if (config.file) lines.push(`config     ${config.file}`);
  const plain = s.listen.map(formatHostPort).join(', ') || '(none)';
  lines.push(`smtp       ${plain}${s.tls ? ' (STARTTLS)' : ''}`);
  if (s.tlsListen.length) lines.push(`smtps      ${s.tlsListen.map(formatHostPort).join(', ')}`);
  const requireTls =
    s.requireTls === undefined ? 'on non-loopback listeners' : s.requireTls ? 'always' : 'never';
  lines.push(
    `           hostname ${s.hostname}; TLS for AUTH: ${requireTls}; ` +
      `max ${s.maxClients} clients, ${s.maxMessageSize} bytes/message, ${s.maxRecipients} recipients; ` +
      `idle ${formatDuration(s.idleTimeoutMs)}` +
      (s.minDataRate > 0 ? `, messages at least ${s.minDataRate} bytes/s` : ''),
  );
  lines.push(
    `           in flight: ${s.maxInflightMessages} messages, ${s.maxInflightBytes} bytes; ` +
      `trusted networks: ${s.trustedNetworks.join(', ') || 'none'}`,
  );
  lines.push(
    `http       ${config.http.listen ? formatHostPort(config.http.listen) : 'disabled'}` +
      ` (admin API ${config.http.adminToken ? 'enabled' : 'disabled'})`,
  );
  lines.push(
    `state      ${config.state.dir} (secrets at rest ${config.state.secretKey ? 'encrypted' : 'NOT encrypted'})`,
  );

  const perProvider = new Map<string, number>();
  for (const a of config.accounts) perProvider.set(a.provider, (perProvider.get(a.provider) ?? 0) + 1);
  lines.push('providers');
  const names = Object.keys(config.providers);
  const width = Math.max(...names.map((n) => n.length));
  for (const name of names) {
    const p = config.providers[name]!;
    const n = perProvider.get(name) ?? 0;
    const rate = p.messagesPerMinute ? `${p.messagesPerMinute}/min` : 'unlimited';
    lines.push(
      `  ${name.padEnd(width)}  ${formatHostPort(p.smtp)} ${p.smtp.security}, ` +
        `${p.maxConnectionsPerAccount} conn/account, ${rate}; ${n} account${n === 1 ? '' : 's'}`,
    );
    if (n > 0 || p.auth || p.oauthClient) lines.push(`  ${''.padEnd(width)}  ${authText(p)}`);
  }
  const fromFile = config.accountsFile ? ` (accounts file ${config.accountsFile})` : '';
  lines.push(`accounts   ${config.accounts.length}${fromFile}`);
  lines.push(`log        ${config.log.level}${config.log.messages ? ', one line per message' : ''}`);
  if (warnings.length) {
    lines.push(`warnings   ${warnings.length}`);
    for (const w of warnings) lines.push(`  - ${w}`);
  } else {
    lines.push('warnings   none');
  }
  return lines.join('\n');
}
