// Command bareproxy is the baseline of scripts/bench-proxy.sh: the plainest Go
// HTTPS reverse proxy, httputil.NewSingleHostReverseProxy with its default
// Transport, behind the same TLS termination as keyway (TLS 1.3, ECDSA P-256
// certificate). Whatever keyway costs beyond this is keyway's own doing.
//
// The certificate is self-signed and made in memory at start; load
// generators such as wrk do not verify it.
//
// With -tuned it adds the two changes keyway makes to its proxies (a
// sync.Pool of copy buffers and 256 idle upstream connections instead of Go's
// 2), to tell the cost of keyway's own work from that of the plain hop.
//
// With -allow it is no proxy but the most trivial auth service behind nginx's
// auth_request: 200 to every request, over the same TLS. keyway's forward
// auth is measured against it.
//
// With -floor it is no HTTP server either, but the least a Go program can do
// to relay a request over TLS (floor.go): the c=1 phase's measure of what the
// hop itself costs on the machine.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18443", "HTTPS address to listen on")
	upstream := flag.String("upstream", "http://127.0.0.1:18080", "upstream base URL")
	tuned := flag.Bool("tuned", false, "pool copy buffers and keep 256 idle upstream connections (keyway's settings)")
	allow := flag.Bool("allow", false, "answer 200 to everything: a trivial auth service, not a proxy")
	floor := flag.Bool("floor", false, "relay bodyless HTTP/1.1 requests with no HTTP library: the floor of a Go hop (see floor.go)")
	flag.Parse()

	target, err := url.Parse(*upstream)
	if err != nil {
		log.Fatalf("bareproxy: upstream: %v", err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	if *tuned {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = 256
		t.MaxIdleConnsPerHost = 256
		proxy.Transport = t
		proxy.BufferPool = newBufferPool()
	}

	cert, err := selfSigned()
	if err != nil {
		log.Fatalf("bareproxy: certificate: %v", err)
	}
	tlsCfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", *listen)
	if err != nil {
		log.Fatalf("bareproxy: %v", err)
	}
	if *floor {
		log.Printf("bareproxy: https://%s -> %s (floor)", ln.Addr(), target.Host)
		log.Fatal(serveFloor(ln, tlsCfg, target.Host))
	}
	var handler http.Handler = proxy
	if *allow {
		handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	}
	srv := &http.Server{
		Handler:           handler,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	log.Printf("bareproxy: https://%s -> %s (tuned=%v)", ln.Addr(), target, *tuned)
	log.Fatal(srv.Serve(tls.NewListener(ln, tlsCfg)))
}

// selfSigned makes a throwaway ECDSA P-256 certificate for 127.0.0.1 and
// localhost, valid for a day.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "bareproxy"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// bufferPool recycles the proxy's 32 KiB copy buffers (as keyway does).
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }
