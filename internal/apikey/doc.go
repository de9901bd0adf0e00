// Package apikey is keyway's API keys for programs: their format, their
// lifecycle (create, list, update, rotate, revoke, delete) and their
// verification on the hot path.
//
// Threat model and invariants:
//
//   - A key is shown exactly once, when it is created. The store keeps its
//     public ID and an HMAC-SHA-256 of the whole key under a server-side
//     pepper that lives outside the database, so a stolen database (or
//     backup) yields neither keys nor an offline guessing oracle.
//   - The format kw_<env>_<id><secret><crc32> lets a typo or a random string
//     be rejected offline, before any look-up, and lets secret scanners match
//     keys with near-zero false positives. The ID is public; the secret has
//     about 166 bits from crypto/rand.
//   - Malformed, unknown, revoked and expired keys are indistinguishable to a
//     caller: one error, ErrInvalid. The difference is kept for the audit log
//     and the usage counters only.
//   - Hash comparisons are constant-time.
//   - A revocation, rotation or update made anywhere (this process, the CLI
//     on the same data directory, another node) reaches every verifier's
//     cache within a second through the store's change feed, and a hard
//     staleness bound caps how long any cached decision can live.
package apikey
