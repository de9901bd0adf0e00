// Package portal serves the web pages for people under /.keyway/portal/:
// sign-in, sign-up, first-admin setup, enrolment and recovery, and for a
// signed-in person their passkeys, sessions and API keys (with usage
// charts), plus the admin pages (users, all sessions, all keys, audit).
//
// The pages are rendered on the server with html/template and read state
// through small interfaces; every change goes through the JSON endpoints of
// httpapi, called by one first-party script (static/app.js). The portal
// itself changes nothing.
//
// Threat model and invariants:
//   - Script injection. Every page carries a strict Content-Security-Policy
//     (Policy): only the embedded app.js and app.css load, and there is no
//     inline script, inline style or inline event handler anywhere, so an
//     injected tag runs nothing. html/template escapes all data. With the
//     public origin configured (as app does), the policy names app.js and
//     app.css by full, content-hashed URL rather than 'self': the portal
//     shares its origin with the upstreams, whose scripts it must not trust.
//   - Secrets never travel in a URL. Session tokens stay in the HttpOnly
//     cookie; an API key or a set of recovery codes exists only in the JSON
//     response that created it, and the script writes it into the page once.
//     One-time link tokens ride in the URL fragment, which the browser never
//     sends, and the script drops the fragment from history once read.
//   - Access. Pages for people need a full (not restricted) session; admin
//     pages need the admin role (403 otherwise) and a fresh session, like
//     the admin API, or they offer a step-up first. A signed-out visitor is
//     redirected to sign-in, with a "next" that may only name a portal page
//     (no open redirect).
//   - Framing and caching. Pages cannot be framed (frame-ancestors 'none')
//     and are never cached (no-store); only the content-hashed static
//     assets are cacheable.
package portal
