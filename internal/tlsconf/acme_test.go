package tlsconf

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// noNetwork is an http.RoundTripper that fails the test if ACME tries to
// reach the CA.
type noNetwork struct{ t *testing.T }

func (n noNetwork) RoundTrip(r *http.Request) (*http.Response, error) {
	n.t.Errorf("unexpected ACME request to %s", r.URL)
	return nil, errors.New("network disabled in tests")
}

func testACMEConfig(t *testing.T) ACMEConfig {
	return ACMEConfig{
		Hosts:        []string{"auth.example.com", "Login.Example.COM."},
		Email:        "ops@example.com",
		DirectoryURL: "https://127.0.0.1:1/directory",
		CacheDir:     filepath.Join(t.TempDir(), "acme"),
		HTTPClient:   &http.Client{Transport: noNetwork{t}},
	}
}

func TestNewACMEValidation(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(c *ACMEConfig)
		wantErr []string // substrings that must all appear
	}{
		{"valid", func(*ACMEConfig) {}, nil},
		{"default directory", func(c *ACMEConfig) { c.DirectoryURL = "" }, nil},
		{"no email", func(c *ACMEConfig) { c.Email = "" }, nil},
		{"no hosts", func(c *ACMEConfig) { c.Hosts = nil }, []string{"at least one host"}},
		{"empty host", func(c *ACMEConfig) { c.Hosts = []string{""} }, []string{"empty"}},
		{"wildcard", func(c *ACMEConfig) { c.Hosts = []string{"*.example.com"} }, []string{"wildcard"}},
		{"port", func(c *ACMEConfig) { c.Hosts = []string{"example.com:443"} }, []string{"bare host"}},
		{"url", func(c *ACMEConfig) { c.Hosts = []string{"https://example.com"} }, []string{"bare host"}},
		{"ipv4", func(c *ACMEConfig) { c.Hosts = []string{"192.0.2.1"} }, []string{"IP"}},
		{"ipv6", func(c *ACMEConfig) { c.Hosts = []string{"2001:db8::1"} }, []string{"IP"}},
		{"single label", func(c *ACMEConfig) { c.Hosts = []string{"localhost"} }, []string{"single-label"}},
		{"unicode", func(c *ACMEConfig) { c.Hosts = []string{"bücher.example"} }, []string{"xn--"}},
		{"bad label", func(c *ACMEConfig) { c.Hosts = []string{"-bad.example.com"} }, []string{"not a valid DNS name"}},
		{"http directory", func(c *ACMEConfig) { c.DirectoryURL = "http://acme.example/dir" }, []string{"https"}},
		{"bad email", func(c *ACMEConfig) { c.Email = "Ops <ops@example.com>" }, []string{"email"}},
		{"no cache dir", func(c *ACMEConfig) { c.CacheDir = "" }, []string{"cache dir is required"}},
		{"all problems at once", func(c *ACMEConfig) {
			c.Hosts = []string{"ok.example.com", "*.example.com", "x:1"}
			c.CacheDir = ""
		}, []string{"wildcard", "bare host", "cache dir"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testACMEConfig(t)
			tc.edit(&cfg)
			a, err := NewACME(cfg)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("NewACME: %v", err)
				}
				if diff := cmp.Diff([]string{"auth.example.com", "login.example.com"}, a.Hosts()); diff != "" {
					t.Errorf("Hosts (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil {
				t.Fatal("NewACME succeeded")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestACMEHostPolicy(t *testing.T) {
	a, err := NewACME(testACMEConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	getters := map[string]func(*tls.ClientHelloInfo) (*tls.Certificate, error){
		"manager": a.m.GetCertificate,
		"ACME":    a.GetCertificate,
	}
	for name, get := range getters {
		t.Run(name, func(t *testing.T) {
			for _, host := range []string{"evil.example.net", "sub.auth.example.com", "example.com"} {
				_, err := get(&tls.ClientHelloInfo{ServerName: host})
				if !errors.Is(err, ErrHostNotAllowed) {
					t.Errorf("%s: error = %v, want ErrHostNotAllowed", host, err)
				}
			}
			if _, err := get(&tls.ClientHelloInfo{}); err == nil {
				t.Error("empty ServerName accepted")
			}
		})
	}
}

func TestACMECacheDir(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes are not meaningful on Windows")
	}
	t.Run("created 0700", func(t *testing.T) {
		cfg := testACMEConfig(t)
		cfg.CacheDir = filepath.Join(t.TempDir(), "a", "b", "acme")
		if _, err := NewACME(cfg); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(cfg.CacheDir)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o700 {
			t.Errorf("mode = %04o, want 0700", got)
		}
	})
	t.Run("existing 0700 accepted", func(t *testing.T) {
		cfg := testACMEConfig(t)
		if err := os.Mkdir(cfg.CacheDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := NewACME(cfg); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("existing 0755 refused", func(t *testing.T) {
		cfg := testACMEConfig(t)
		if err := os.Mkdir(cfg.CacheDir, 0o700); err != nil {
			t.Fatal(err)
		}
		chmod(t, cfg.CacheDir, 0o755)
		_, err := NewACME(cfg)
		if !errors.Is(err, ErrInsecureDir) {
			t.Fatalf("error = %v, want ErrInsecureDir", err)
		}
	})
}

func TestACMENextProtosMergedByPolicy(t *testing.T) {
	a, err := NewACME(testACMEConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Policy(a, true)
	if diff := cmp.Diff([]string{"h2", "http/1.1", "acme-tls/1"}, cfg.NextProtos); diff != "" {
		t.Errorf("NextProtos (-want +got):\n%s", diff)
	}
	if cfg.MinVersion != tls.VersionTLS13 {
		t.Errorf("MinVersion = %x", cfg.MinVersion)
	}
}

func TestACMEHTTPHandler(t *testing.T) {
	a, err := NewACME(testACMEConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	var fallbackHits int
	h := a.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fallbackHits++
		w.WriteHeader(http.StatusTeapot)
	}))
	tests := []struct {
		name, host, path string
		wantCode         int
		wantFallback     bool
	}{
		{"other path to fallback", "auth.example.com", "/", http.StatusTeapot, true},
		{"challenge for a host not allowed", "evil.example.net", "/.well-known/acme-challenge/tok", http.StatusForbidden, false},
		{"unknown token", "auth.example.com", "/.well-known/acme-challenge/tok", http.StatusNotFound, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fallbackHits = 0
			r := httptest.NewRequest(http.MethodGet, "http://"+tc.host+tc.path, nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.wantCode {
				t.Errorf("status = %d, want %d", w.Code, tc.wantCode)
			}
			if got := fallbackHits == 1; got != tc.wantFallback {
				t.Errorf("fallback called: %v, want %v", got, tc.wantFallback)
			}
		})
	}
}
