package tlsconf

import (
	"crypto/tls"
	"slices"
)

// CertSource supplies the server certificate for a handshake. It has the
// signature of [tls.Config.GetCertificate]: an error aborts that one
// handshake, so implementations must prefer serving a still-valid older
// certificate to failing.
//
// LocalCA, FileSource and ACME implement it.
type CertSource interface {
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
}

// ALPNSource is implemented by a CertSource that needs extra ALPN protocols
// offered, such as ACME, whose tls-alpn-01 challenge (RFC 8737 §3) is
// answered only when "acme-tls/1" can be negotiated. Policy appends the
// protocols it does not already offer.
type ALPNSource interface {
	NextProtos() []string
}

// baseNextProtos are the ALPN protocols every keyway listener offers, in
// server preference order.
var baseNextProtos = []string{"h2", "http/1.1"}

// tls12CipherSuites is the TLS 1.2 suite list: ECDHE key exchange (forward
// secrecy) with AEAD ciphers only, as in Mozilla's "Intermediate" profile.
// It leaves out the CBC-mode suites that Go enables by default
// (ECDHE-*-AES*-CBC-SHA), which scanners report as obsolete and which carry
// the Lucky13 class of padding-oracle timing risk, and every static-RSA key
// exchange suite (no forward secrecy). All six are allowed by the HTTP/2
// cipher-suite rules (RFC 9113 §9.2.2), and the list includes the
// mandatory TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256. Go orders suites itself,
// so the order here does not matter. TLS 1.3 suites are not configurable
// in Go and are all AEAD.
var tls12CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// CipherSuites returns a copy of the TLS 1.2 cipher suites Policy allows.
func CipherSuites() []uint16 { return slices.Clone(tls12CipherSuites) }

// Policy returns keyway's one TLS policy for servers, with certificates
// from src, which must not be nil.
//
//   - MinVersion is TLS 1.2, or TLS 1.3 when min13 is true.
//   - TLS 1.2 is limited to the ECDHE+AEAD suites of CipherSuites.
//   - CurvePreferences is left nil on purpose. Setting it replaces Go's
//     default key-exchange groups rather than reordering them (Go ignores the
//     order), so listing classical curves here would silently switch off the
//     post-quantum hybrids X25519MLKEM768 (Go 1.24+) and SecP256r1MLKEM768 /
//     SecP384r1MLKEM1024 (Go 1.26+). With the defaults, those stay on as long
//     as go.mod says go ≥ 1.24 and GODEBUG tlsmlkem/tlssecpmlkem is not 0.
//   - NextProtos is "h2", "http/1.1", plus whatever src asks for through
//     ALPNSource ("acme-tls/1" for ACME).
//
// Session tickets keep Go's defaults (keys rotated daily, dropped after 7
// days). Each call returns a new Config that the caller may modify.
func Policy(src CertSource, min13 bool) *tls.Config {
	minVersion := uint16(tls.VersionTLS12)
	if min13 {
		minVersion = tls.VersionTLS13
	}
	protos := slices.Clone(baseNextProtos)
	if a, ok := src.(ALPNSource); ok {
		for _, p := range a.NextProtos() {
			if !slices.Contains(protos, p) {
				protos = append(protos, p)
			}
		}
	}
	return &tls.Config{
		MinVersion:     minVersion,
		CipherSuites:   CipherSuites(),
		NextProtos:     protos,
		GetCertificate: src.GetCertificate,
	}
}
