// Package decision is keyway's one answer to "who is this, and may they
// pass?". Every door that lets a request in asks it: the proxy, keyway's own
// /.keyway/ endpoints, the portal, the admin listener, forward auth at
// /.keyway/verify, and the verify middleware for Go services. A rule fixed
// here is fixed at every door.
//
// A door turns its request into Facts (FactsFrom reads them from an
// *http.Request the one way: which header carries keys, which cookie
// carries sessions, the CSRF evidence) and asks Core.Decide for a Route:
// what that route (or endpoint) requires. The answer is a Decision: allowed
// with an Identity, or denied with a Reason. Reason.Problem and WriteDenial
// are the one mapping from a reason to an HTTP status and problem type.
//
// Invariants:
//
//   - Fail closed: a credential that cannot be checked (the store is down)
//     is Unavailable (503), never allowed; a route whose policy has nothing
//     behind it (no key verifier, no session verifier) denies everyone.
//   - No oracle: every way an API key is wrong (malformed, unknown, wrong
//     secret, revoked, expired, rotated out, outside its networks) is the
//     same BadKey; every way a session is wrong (no cookie, unknown,
//     expired, revoked, a disabled or deleted user) is the same NoSession.
//     What differs is counted and audited, never answered.
//   - Browser and program credentials never cross: cookie-authenticated
//     state changes need the CSRF evidence (X-Keyway-CSRF: 1, a same-origin
//     Sec-Fetch-Site and an allowed Origin), a cookie-authenticated
//     WebSocket handshake needs an allowed Origin, and API keys are read
//     from one configured header only.
//   - The hot path of an API key with a warm cache allocates nothing:
//     Decide returns a value, and the identity's strings come from the
//     key service's cache.
package decision
