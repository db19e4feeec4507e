// Mailbox addresses compare case-insensitively. Each one is normalised once, where it enters the
// process (config and accounts files, SMTP AUTH and MAIL FROM, the admin API, the `accounts`
// commands); everything inside compares them as they are.

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}
