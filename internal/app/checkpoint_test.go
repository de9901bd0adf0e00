package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/audit"
)

// TestAuditCheckpointsOfARun: a server signs the trail's head when it
// starts, on its interval while the head moves, and when it stops, so the
// trail it leaves verifies with nothing unsigned; each checkpoint is also
// a log line. With checkpoints off, no key is made.
func TestAuditCheckpointsOfARun(t *testing.T) {
	cfg := apptest.Demo(t)
	cfg.Audit.CheckpointEvery = time.Second
	in := apptest.Start(t, cfg)
	signedUpTo := func() int64 {
		rep, err := app.VerifyAudit(context.Background(), cfg, os.Getenv, nil)
		if err == nil && rep.LastCheckpoint == nil && rep.Checkpoints == 0 {
			// The start's checkpoint is signed beside the first requests;
			// on a loaded machine it may not be written yet.
			return -1
		}
		if err != nil || rep.Broken != nil || rep.LastCheckpoint == nil {
			t.Fatalf("trail of a running server: %+v %v", rep, err)
		}
		return rep.LastCheckpoint.Seq
	}
	admin := mustCreateAdminKey(t, cfg) // event 1, written beside the server
	waitFor(t, 10*time.Second, "a checkpoint of event 1", func() bool { return signedUpTo() == 1 })
	newPerson(t, in).register(map[string]string{"username": "ada"}) // more, through the server
	head, _, err := app.AuditHead(context.Background(), cfg)
	apptest.Must(t, err, "head")
	waitFor(t, 10*time.Second, "the interval's checkpoint", func() bool { return signedUpTo() == head })
	mustCreateAdminKey(t, cfg) // signed by nothing but the stop
	in.Stop(t)

	rep, err := app.VerifyAudit(context.Background(), cfg, os.Getenv, nil)
	if err != nil || rep.Broken != nil || rep.Events != head+1 || rep.Unsigned != 0 || rep.LastCheckpoint.Seq != head+1 {
		t.Fatalf("after a clean stop: %+v %v; want the stop to sign event %d", rep, err, head+1)
	}
	if n := strings.Count(in.Logs(), `"msg":"audit checkpoint"`); n != int(rep.Checkpoints) {
		t.Errorf("%d checkpoint log lines for %d checkpoints", n, rep.Checkpoints)
	}
	if strings.Contains(in.Logs(), admin) {
		t.Error("a key reached the log")
	}

	off := apptest.Demo(t)
	off.Audit.CheckpointEvery = 0
	apptest.Start(t, off).Stop(t)
	if _, err := os.Stat(filepath.Join(off.DataDir, "audit.key")); !os.IsNotExist(err) {
		t.Fatalf("checkpoints off made a signing key: %v", err)
	}
}

// TestFailedSignInIsAudited: a refused passkey response is in the trail,
// under a pseudonym of the client, never its address.
func TestFailedSignInIsAudited(t *testing.T) {
	cfg := apptest.Demo(t)
	in := apptest.Start(t, cfg)
	p := newPerson(t, in)
	p.register(map[string]string{"username": "fay"})
	p.want(204, "POST", "/.keyway/auth/logout", nil)
	p.want(200, "POST", "/.keyway/auth/passkey/login/begin", map[string]string{})
	if res, _ := p.do("POST", "/.keyway/auth/passkey/login/finish", `{"id":"bm9wZQ","rawId":"bm9wZQ","type":"public-key","response":{}}`); res.StatusCode != 400 {
		t.Fatalf("a forged assertion: %d", res.StatusCode)
	}
	var found *audit.Event
	waitFor(t, 5*time.Second, "the failed sign-in in the trail", func() bool {
		for _, r := range recentEvents(t, cfg, 1) {
			if r.Event.Type == audit.SignInFailed {
				found = &r.Event
				return true
			}
		}
		return false
	})
	if !strings.HasPrefix(found.Subject, "client:c_") || found.Detail["why"] != "ceremony" || strings.Contains(found.Subject, "127.0.0.1") {
		t.Fatalf("the event: %+v", found)
	}
}
