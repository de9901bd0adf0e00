// Package passkey is keyway's sign-up and sign-in for people: WebAuthn
// ceremonies on github.com/go-webauthn/webauthn, accounts, their passkeys,
// recovery codes and one-time links. There are no passwords.
//
// Threat model and invariants:
//
//   - Phishing: a passkey signs only for its relying party ID and the
//     origins in config; the library checks origin and rpIdHash (WebAuthn L3
//     §7.1 step 9, §7.2 step 15).
//   - User verification is required (§7.2 step 17), not "preferred" (the
//     library's default), so an assertion without a PIN or biometric never
//     signs anyone in.
//   - Replay: ceremony state lives server-side and is taken — read and
//     deleted in one statement — by the first finish; a second or concurrent
//     finish, or one after the 5-minute expiry (checked here, not trusted to
//     the store), fails.
//   - Cloned authenticators: a signature counter that goes backwards
//     (§6.1.1) is handled by policy: deny (default when the stored counter
//     is above 0), require step-up, or log; it is always audited.
//   - Synced passkeys flip their backup-eligible flag: a change is accepted
//     after the signature verifies, recorded and audited, instead of locking
//     the user out.
//   - Lost devices: ten single-use recovery codes (80 bits each, stored as
//     SHA-256) give a restricted session that can only add a passkey; the
//     last passkey cannot be removed while no unused code remains.
//   - Removing a passkey ends every session it signed in, in the same
//     transaction.
//   - Account enumeration: sign-in options are the same discoverable request
//     whether a username is given, known or unknown; a given username must
//     match the account whose passkey answers.
package passkey
