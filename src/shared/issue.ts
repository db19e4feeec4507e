// One problem found in an input (config file, accounts file, admin API body), named by where it is,
// so `check`, the `accounts` commands and the admin API can list every problem at once.

export interface Issue {
  /**
   * e.g. `accounts[3].provider`, `smtp.listen[0]`, `accounts.yaml: accounts[2].email`; relative to
   * the account for one account (`provider`, `email`); '' = the input as a whole
   */
  path: string;
  message: string;
}

/** `accounts[3].provider: unknown provider "gmial"` (the message alone when the path is empty) */
export function formatIssue(issue: Issue): string {
  return issue.path ? `${issue.path}: ${issue.message}` : issue.message;
}
