package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"net"
)

// File names of the upstream client CA, inside LocalCAConfig.Dir.
const (
	ClientCACertFileName = "upstream-client-ca.pem"     // give it to upstreams to trust
	ClientCAKeyFileName  = "upstream-client-ca-key.pem" // mode 0600
)

// clientCA is the CA that certifies keyway to its upstreams (mutual TLS).
// Its root and leaves are for client authentication only, and its name
// constraints permit only the ".invalid" domain and no IP address, so even
// a stolen key cannot make a certificate any server name would accept.
var clientCA = &caKind{
	certName: ClientCACertFileName, keyName: ClientCAKeyFileName,
	rootName: "keyway upstream client CA", leafName: "keyway", org: "keyway gateway",
	usage: x509.ExtKeyUsageClientAuth, dnsDomains: []string{".invalid"},
	ipRanges:    []*net.IPNet{{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(32, 32)}},
	constraints: "client authentication only, no names",
}

// OpenClientCA loads the upstream client CA in cfg.Dir, creating it on
// first use, and issues keyway's first client certificate (CN "keyway",
// no names, 24 hours by default, renewed by GetClientCertificate). cfg.Names
// must be empty. Upstreams that want mutual TLS trust its CertFile.
func OpenClientCA(cfg LocalCAConfig) (*LocalCA, error) {
	if len(cfg.Names) > 0 {
		return nil, errNamesForClientCA
	}
	return openCA(cfg, clientCA, nil, nil)
}

var errNamesForClientCA = errorString("client ca: a client certificate carries no names")

type errorString string

func (e errorString) Error() string { return string(e) }

// GetClientCertificate returns the current client certificate, renewing it
// as GetCertificate renews a server leaf: for tls.Config.GetClientCertificate.
func (ca *LocalCA) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return ca.GetCertificate(nil)
}
