// Package session is keyway's server-side sessions for people signed in
// with a browser: creating them after a passkey (or recovery) sign-in,
// authenticating the token a browser presents, step-up with token rotation,
// listing and revoking. Cookies, CSRF and HTTP status codes are httpapi's
// business; this package never sees a request.
//
// Threat model and invariants:
//
//   - Opaque tokens, not JWTs. A session token is 256 random bits that mean
//     nothing by themselves; the session lives in the store. Revocation
//     (sign-out, "sign out everywhere", a removed passkey, an admin action)
//     therefore takes effect on the very next request, with no deny list and
//     no token lifetime to wait out; there is no signing key to leak or
//     rotate, no algorithm to confuse (RFC 8725 §2.1) and no claims readable
//     by whoever holds the cookie. The price is one indexed read per request,
//     which SQLite serves from memory.
//   - Tokens are only ever stored as SHA-256(token). A stolen database or
//     backup yields no token that works. A plain, unsalted, fast hash is
//     enough because the input is not a password: with 256 bits from a CSPRNG
//     there is no dictionary to try, and finding any token for a stored hash
//     is a SHA-256 preimage (2^256 work). Salts and slow hashes defend
//     low-entropy secrets and would buy nothing here but CPU on every
//     request; an unkeyed hash also lets every store backend (SQLite,
//     Postgres, Redis) share sessions without sharing a secret.
//   - The token is kws_ followed by 43 base64url characters (32 bytes of
//     Config.Rand). The prefix lets secret scanners and log filters spot a
//     leaked token, and lets Authenticate reject a malformed token (wrong
//     prefix, length or alphabet) as ErrNotFound without touching the store.
//     Create and StepUp return the only copy; nothing here logs or audits it.
//   - Look-up is by the hash, never by comparing tokens in Go, so there is
//     no secret-dependent early exit to time. An index search does compare
//     the presented hash with stored hashes byte by byte, but the attacker
//     chooses the token and so only learns how many leading bytes of
//     SHA-256(guess) match some stored hash; turning that into a token still
//     needs a SHA-256 preimage. This is the same argument that makes
//     "look up by hash" safe for any high-entropy bearer token.
//   - Every failure looks alike: unknown, malformed, expired, revoked and
//     "someone else's session" are all ErrNotFound, so the API is no oracle
//     for which session IDs exist. (The session ID, ses_ + 16 base62, is
//     public: it names a session in lists and revocations and authenticates
//     nothing.)
//   - Timeouts are enforced here, server side, on every Authenticate, whatever
//     the cookie says: an idle timeout (default 30 minutes) and an absolute
//     timeout (default 12 hours) from sign-in that activity never extends.
//     The defaults are the reauthentication bounds of OWASP ASVS 4.0.3 V3.3.2
//     at level 2 and NIST SP 800-63B §4.2.3 (AAL2). An expired session is
//     deleted when it is presented, and Sweep deletes the ones never
//     presented again. last_seen is written at most once per TouchEvery, so a
//     busy session does not turn every read into a write; as the stored value
//     can lag by up to TouchEvery, a session may time out up to TouchEvery
//     early, never late.
//   - New tokens on every privilege change (ASVS V3.2.1, session fixation):
//     Create always mints a new token and session, so no token that existed
//     before sign-in is ever promoted. StepUp, which records a fresh
//     user-verified assertion for sensitive actions (ASVS V3.7.1), replaces
//     the token in the same transaction: the old one is dead before the new
//     one is returned, and a copy stolen earlier cannot ride the fresh step-up.
//   - Fresh reports a step-up younger than StepUpMaxAge (default 5 minutes).
//     A restricted session, made by a recovery code, is never Fresh: it may
//     only enrol a passkey, and a full session needs a new sign-in with it.
//   - Sessions can be listed and revoked one by one, all but the current one,
//     all of a user's (admin, or when a user is disabled: call RevokeUser in
//     the same flow) and all made with one passkey (when it is removed)
//     (ASVS V3.3.1, V3.3.3, V3.3.4).
//   - Creation, step-up and revocation are written as audit events in the
//     same transaction as the change (see package audit). Events carry
//     session and user IDs, never tokens or their hashes, never IP addresses
//     or user agents (personal data, kept only on the session row), and a
//     credential only as a SHA-256 hex prefix. Timeouts are not audited: they
//     are the passage of time, not anyone's action.
package session
