package app_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/testenv"
)

// expectedFindings are what testssl.sh reports of any certificate from
// keyway's local CA, by design (docs/threat-model.md, "TLS everywhere"):
// leaf certificates live a day and are renewed in memory, so they always
// "expire in less than 30 days"; a local CA publishes no CRL or OCSP
// responder (a leaf that lives a day needs none); a loopback name has no
// CAA record. Everything else must be rated LOW or better.
var expectedFindings = map[string]string{
	"cert_expirationStatus": "one-day leaf certificates, renewed in memory",
	"cert_notAfter":         "one-day leaf certificates, renewed in memory",
	"cert_revocation":       "a local CA publishes no CRL or OCSP: its leaves live a day",
}

// TestTLSScan runs Debian's testssl.sh against keyway's HTTPS listener
// (the local CA, as a laptop runs it): nothing above LOW but the local
// CA's known properties, no CBC suite offered, no protocol below TLS 1.2,
// and HSTS sent.
func TestTLSScan(t *testing.T) {
	if testing.Short() {
		t.Skip("a TLS scan takes about a minute")
	}
	bin := testenv.LookPath(t, "testssl", "install Debian's testssl.sh")
	cfg := apptest.Demo(t)
	in := apptest.Start(t, cfg)
	out := filepath.Join(t.TempDir(), "scan.json")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--quiet", "--color", "0", "--warnings", "off", "--openssl-timeout", "5",
		"--add-ca", filepath.Join(cfg.DataDir, "ca.pem"), "--jsonfile-pretty", out, in.App.Addr("https"))
	log, err := cmd.CombinedOutput()
	if err != nil && ctx.Err() != nil {
		t.Fatalf("testssl.sh did not finish: %v\n%s", err, log)
	}
	b, rerr := os.ReadFile(out)
	if rerr != nil {
		t.Fatalf("testssl.sh wrote no report (%v): %s", err, log)
	}
	var report struct {
		ScanResult []map[string]json.RawMessage `json:"scanResult"`
	}
	if err := json.Unmarshal(b, &report); err != nil || len(report.ScanResult) == 0 {
		t.Fatalf("report: %v", err)
	}
	type finding struct{ ID, Severity, Finding string }
	var all []finding
	for _, section := range report.ScanResult[0] {
		var fs []finding
		if json.Unmarshal(section, &fs) == nil {
			all = append(all, fs...)
		}
	}
	if len(all) < 50 {
		t.Fatalf("only %d findings: the scan did not run\n%s", len(all), log)
	}
	hsts, tls13 := false, false
	for _, f := range all {
		switch f.Severity {
		case "MEDIUM", "HIGH", "CRITICAL", "FATAL":
			if _, ok := expectedFindings[f.ID]; !ok {
				t.Errorf("%s %s: %s", f.Severity, f.ID, f.Finding)
			}
		}
		if strings.HasPrefix(f.ID, "cipher") && strings.Contains(f.Finding, "CBC") {
			t.Errorf("a CBC suite is offered: %s %s", f.ID, f.Finding)
		}
		for _, old := range []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1"} {
			if f.ID == old && !strings.HasPrefix(f.Finding, "not offered") {
				t.Errorf("%s: %s", f.ID, f.Finding)
			}
		}
		if f.ID == "HSTS_time" && f.Severity == "OK" {
			hsts = true
		}
		if f.ID == "TLS1_3" && strings.HasPrefix(f.Finding, "offered") {
			tls13 = true
		}
	}
	if !hsts || !tls13 {
		t.Errorf("HSTS sent: %v; TLS 1.3 offered: %v", hsts, tls13)
	}
}
