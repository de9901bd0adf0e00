package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/app/apptest"
)

// TestKEKRotationWhileRequestsRun rotates the KEK while people sign up and
// read their sealed data through a running server: no request fails,
// every person opens afterwards, and once the old KEK has left the ring a
// restarted server still opens everyone.
func TestKEKRotationWhileRequestsRun(t *testing.T) {
	cfg := apptest.Demo(t)
	// Each sign-up comes from an address of its own, through a trusted
	// proxy: the sign-up budget is per address.
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
	in := apptest.Start(t, cfg)
	var people []*person
	for i := range 3 {
		p := newPerson(t, in)
		p.register(map[string]string{"username": fmt.Sprintf("early%d", i), "display_name": fmt.Sprintf("Early %d", i)})
		people = append(people, p)
	}
	stop := make(chan struct{})
	var failed, served, signedUp atomic.Int64
	var wg sync.WaitGroup
	for _, p := range people {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, path := range []string{"/.keyway/auth/sessions", "/v1/me", "/.keyway/auth/passkeys"} {
					if res, b := p.do("GET", path, nil); res.StatusCode != 200 {
						failed.Add(1)
						t.Errorf("GET %s during the rotation: %d %s", path, res.StatusCode, b)
					}
					served.Add(1)
				}
			}
		})
	}
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p := newPerson(t, in)
			p.c.Transport = headerTransport{next: p.c.Transport, headers: map[string]string{"X-Forwarded-For": fmt.Sprintf("198.51.%d.%d", i/250, i%250+1)}}
			res, opts := p.do("POST", "/.keyway/auth/passkey/register/begin",
				map[string]string{"username": fmt.Sprintf("during%d", i), "display_name": fmt.Sprintf("During %d", i)})
			if res.StatusCode != 200 {
				failed.Add(1)
				t.Errorf("sign-up during the rotation: %d %s", res.StatusCode, opts)
				return
			}
			if res, b := p.finishRegistration(opts); res.StatusCode != 201 {
				failed.Add(1)
				t.Errorf("sign-up during the rotation: %d %s", res.StatusCode, b)
				return
			}
			signedUp.Add(1)
		}
	})
	ctx := context.Background()
	time.Sleep(300 * time.Millisecond)
	rep, st, err := app.RotateKEK(ctx, cfg, os.Getenv, false)
	apptest.Must(t, err, "rotate")
	if rep.Rewrapped < 3 || len(st.Ring) != 2 || rep.KEK != st.Ring[0] {
		t.Fatalf("rotation: %+v %+v", rep, st)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed.Load() > 0 || signedUp.Load() < 2 {
		t.Fatalf("%d requests failed, %d served, %d signed up", failed.Load(), served.Load(), signedUp.Load())
	}
	t.Logf("during the rotation: %d reads and %d sign-ups, none failed", served.Load(), signedUp.Load())

	// Keys a node wrapped before it read the new ring move over too.
	_, st, err = app.RotateKEK(ctx, cfg, os.Getenv, true)
	apptest.Must(t, err, "rewrap")
	if n := st.DataKeys[st.Ring[1]]; n != 0 || st.DataKeys[st.Ring[0]] < 3+int(signedUp.Load()) {
		t.Fatalf("after --rewrap: %+v", st)
	}
	in.Stop(t)

	// The old KEK leaves the ring; everyone still opens, in a new server too.
	ring, err := os.ReadFile(cfg.DataProtection.KEKFile)
	apptest.Must(t, err, "read the ring")
	current := strings.SplitN(string(ring), "\n", 2)[0] + "\n"
	apptest.Must(t, os.WriteFile(cfg.DataProtection.KEKFile+".tmp", []byte(current), 0o600), "write")
	apptest.Must(t, os.Rename(cfg.DataProtection.KEKFile+".tmp", cfg.DataProtection.KEKFile), "rename")
	again := apptest.Start(t, cfg)
	back := newPerson(t, again)
	back.auth, back.creds = people[0].auth, people[0].creds
	back.login(0)
	var me struct{ Name string }
	if res, b := back.do("GET", "/v1/me", nil); res.StatusCode != 200 || json.Unmarshal(b, &me) != nil || me.Name != "Early 0" {
		t.Fatalf("after the old KEK left: %d %s", res.StatusCode, b)
	}
	db, err := app.OpenStore(ctx, cfg, os.Getenv)
	apptest.Must(t, err, "open")
	defer func() { _ = db.Close() }()
	users, err := db.ListUsers(ctx)
	if err != nil || len(users) != 3+int(signedUp.Load()) {
		t.Fatalf("everyone after the rotation: %d %v", len(users), err)
	}
}
