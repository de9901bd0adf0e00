package app_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/app/apptest"
)

// TestStartupSaysWhatIsProtectedAndWarns: the log of a start names each
// listener with what it serves, each route with what protects it, and
// every security warning of keyway check --production.
func TestStartupSaysWhatIsProtectedAndWarns(t *testing.T) {
	echo := apptest.Echo(t, time.Second)
	cfg := apptest.Config(t, fmt.Sprintf(`
data_dir: {{data}}
trusted_proxies: [0.0.0.0/0]
upstreams: {echo: {url: %s}}
routes:
  - {name: open, path: /open, upstream: echo, policy: public}
  - {name: orders, path: /orders, upstream: echo, policy: api_key, scopes: [orders:read], rate_limit: {rate: 10/s, per: key}}
`, echo))
	in := apptest.Start(t, cfg)
	in.Stop(t)
	logs := in.Logs()
	for _, want := range []string{
		`"msg":"listening","listener":"https"`, `"serves":"the gateway, keyway's own endpoints and the portal (/.keyway/)"`,
		`"serves":"/metrics and the admin API (/v1/, admin keys only)"`,
		`"msg":"protections","tls":"local, at least TLS 1.2","store":"sqlite"`, `"trusted_proxies":"0.0.0.0/0"`, `"tracing":"off"`,
		`"msg":"route","route":"open","path":"/open","methods":"GET,HEAD","policy":"public","upstream":"echo"`,
		`"route":"orders","path":"/orders","methods":"GET,HEAD","policy":"api_key","upstream":"echo","scopes":"orders:read","rate_limit":"10/s per key"`,
		// keyway check's warnings…
		`"msg":"security warning","code":"trusted-proxy-everyone"`, `"code":"public-route-no-rate-limit","setting":"routes[0]"`,
		// …and --production's.
		`"code":"secret-beside-database"`, `"code":"key-store-beside-database"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the start's log lacks %s", want)
		}
	}
}
