// Command signup is a helper of scripts/bench-proxy.sh: it signs one person
// up on a running keyway (open sign-up) with a software passkey, as a
// browser would through the portal's JSON endpoints, and prints the
// session cookie ("name=value") for wrk to send on a session route.
//
// It trusts only the CA it is given and talks to keyway as "localhost".
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/descope/virtualwebauthn"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "keyway's HTTPS address")
	caFile := flag.String("ca", "", "keyway's local CA (data_dir/ca.pem)")
	user := flag.String("user", "bench", "the username to sign up")
	flag.Parse()
	cookie, err := signUp(*addr, *caFile, *user)
	if err != nil {
		fmt.Fprintln(os.Stderr, "signup:", err)
		os.Exit(1)
	}
	fmt.Println(cookie)
}

func signUp(addr, caFile, user string) (string, error) {
	pem, err := os.ReadFile(caFile) //nolint:gosec // the operator names the file
	if err != nil {
		return "", err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return "", errors.New("no certificate in " + caFile)
	}
	jar, _ := cookiejar.New(nil)
	_, port, _ := strings.Cut(addr, ":")
	origin := "https://localhost:" + port
	// URLs name localhost (the passkeys' RP ID and the cookies' host);
	// every connection goes to addr.
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
	}}
	post := func(path string, body any) ([]byte, int, error) {
		j, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, origin+path, bytes.NewReader(j))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Keyway-CSRF", "1")
		req.Header.Set("Origin", origin)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		res, err := c.Do(req)
		if err != nil {
			return nil, 0, err
		}
		defer func() { _ = res.Body.Close() }()
		out, err := io.ReadAll(res.Body)
		return out, res.StatusCode, err
	}
	opts, code, err := post("/.keyway/auth/passkey/register/begin", map[string]string{"username": user, "display_name": user})
	if err != nil {
		return "", fmt.Errorf("register/begin: %w", err)
	}
	if code != http.StatusOK {
		return "", fmt.Errorf("register/begin: %d %s (is sign-up open?)", code, opts)
	}
	ao, err := virtualwebauthn.ParseAttestationOptions(string(opts))
	if err != nil {
		return "", err
	}
	var o struct {
		PublicKey struct{ User struct{ ID string } }
	}
	if err := json.Unmarshal(opts, &o); err != nil {
		return "", err
	}
	auth := virtualwebauthn.NewAuthenticator()
	if auth.Options.UserHandle, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(o.PublicKey.User.ID, "=")); err != nil {
		return "", err
	}
	rp := virtualwebauthn.RelyingParty{Name: "keyway", ID: "localhost", Origin: origin}
	resp := virtualwebauthn.CreateAttestationResponse(rp, auth, credential(), *ao)
	out, code, err := post("/.keyway/auth/passkey/register/finish", json.RawMessage(resp))
	if err != nil {
		return "", fmt.Errorf("register/finish: %w", err)
	}
	if code != http.StatusCreated {
		return "", fmt.Errorf("register/finish: %d %s", code, out)
	}
	for _, ck := range jar.Cookies(mustURL(origin)) {
		if strings.HasSuffix(ck.Name, "keyway_session") {
			return ck.Name + "=" + ck.Value, nil
		}
	}
	return "", errors.New("signed up, but no session cookie came back")
}

// credential makes a P-256 passkey whose coordinates are 32 bytes each, as
// the software authenticator encodes them.
func credential() virtualwebauthn.Credential {
	for {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		if len(k.X.Bytes()) != 32 || len(k.Y.Bytes()) != 32 {
			continue
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			panic(err)
		}
		return virtualwebauthn.NewCredentialWithImportedKey(virtualwebauthn.KeyTypeEC2, der)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
