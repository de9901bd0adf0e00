// Package tlsconf holds keyway's TLS server policy and its three sources of
// certificates: a local development CA (LocalCA), certificate and key files
// reloaded when they change (FileSource), and ACME (ACME).
//
// # Threat model
//
// keyway terminates HTTPS in front of applications, so its TLS settings and
// keys protect every session cookie and API key that crosses it. The
// package assumes an attacker who can observe and tamper with the network,
// record traffic now to decrypt it later, point DNS names at keyway, and
// read files that are left readable to other local users. It does not
// defend against root on the host.
//
// # Invariants
//
//   - One policy (Policy). TLS 1.2 is the minimum, with a TLS 1.3-only
//     option. TLS 1.2 offers only ECDHE key exchange with AEAD ciphers
//     (AES-GCM, ChaCha20-Poly1305). Go's default list still includes
//     ECDHE-*-AES-CBC-SHA suites. Their MAC-then-encrypt construction is
//     the root of the Lucky13 and padding-oracle family, and scanners
//     grade them down, so they are off. Static-RSA key exchange (no
//     forward secrecy) is off too.
//   - Post-quantum key exchange stays on. CurvePreferences is never set:
//     in Go it replaces the default group list rather than reordering it,
//     which would silently drop the hybrid X25519MLKEM768 (and the
//     SecP*MLKEM* groups) that protect recorded traffic against a future
//     quantum computer. Go negotiates those by default when go.mod says
//     go ≥ 1.24 and GODEBUG does not set tlsmlkem=0.
//   - The local CA cannot be abused beyond loopback. Its root carries a
//     critical Name Constraints extension (RFC 5280 §4.2.1.10) that permits
//     only the DNS names localhost and *.localhost and the IP ranges
//     127.0.0.0/8 and ::1/128, and an extended key usage of serverAuth
//     only. A developer trusts that root in a browser. If its key were
//     stolen, the attacker could still not mint a certificate a
//     constraint-checking client accepts for a real site. OpenLocalCA
//     refuses a root without exactly these constraints.
//   - Private keys are not readable by others. The CA key is written with
//     mode 0600 in a directory created with mode 0700. A CA key file whose
//     mode lets group or other users in is refused (ErrInsecureKeyFile)
//     rather than trusted.
//   - Local leaves are short-lived: 24 hours by default, backdated five
//     minutes for clock skew, and replaced once less than a third of their
//     lifetime remains. They exist only in memory, so a leaked leaf key is
//     useful for a day at most, and revocation never needs to exist.
//   - Handshakes do not fail because of rotation. Every source serves its
//     current certificate from an atomic pointer. Renewal (LocalCA) and
//     reload (FileSource) happen beside the hot path. A replacement that
//     cannot be used is logged and the previous certificate kept.
//   - ACME requests certificates only for the configured hosts. A nil
//     autocert HostPolicy would accept any SNI, letting anyone who points a
//     name at keyway spend its CA rate limits. The allowlist is required
//     and refuses wildcards, which http-01 and tls-alpn-01 cannot prove.
//   - The ACME cache directory holds the ACME account key and every issued
//     certificate with its private key, as unencrypted PEM. It is created
//     with mode 0700, and an existing one with a looser mode is refused
//     (ErrInsecureDir).
//   - No key material is logged. Logs carry paths, names, serials, expiry
//     times and SHA-256 fingerprints of certificates only.
package tlsconf
