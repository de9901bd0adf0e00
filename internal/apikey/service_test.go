package apikey_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/store/sqlite"
)

type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }
func pepper() []byte                 { return bytes.Repeat([]byte{7}, 32) }
func quiet() *slog.Logger            { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func client(s string) netip.Addr     { return netip.MustParseAddr(s) }
func ptr[T any](v T) *T              { return &v }
func mustNot(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func openDB(t *testing.T) (*sqlite.DB, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keyway.db")
	db, err := sqlite.Open(context.Background(), p)
	mustNot(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db, p
}

func newService(t *testing.T, db *sqlite.DB, c *clock) *apikey.Service {
	t.Helper()
	s, err := apikey.New(context.Background(), apikey.Config{
		Store: db, Changes: db, Usage: db, Pepper: pepper(), Now: c.Now, Logger: quiet(),
		PollInterval: 20 * time.Millisecond,
	})
	mustNot(t, err)
	return s
}

var ctx = context.Background()

func create(t *testing.T, s *apikey.Service, p apikey.CreateParams) (string, *apikey.Key) {
	t.Helper()
	if p.Name == "" {
		p.Name = "test key"
	}
	if p.Owner == "" {
		p.Owner = "service:billing"
	}
	raw, k, err := s.Create(ctx, p, "test")
	mustNot(t, err)
	return raw, k
}

func TestCreateVerify(t *testing.T) {
	db, path := openDB(t)
	c := newClock()
	s := newService(t, db, c)
	raw, k := create(t, s, apikey.CreateParams{Scopes: []string{"weather:history", "a", "a"}})
	if k.ExpiresAt.Sub(k.CreatedAt) != 90*24*time.Hour {
		t.Fatalf("default lifetime %v", k.ExpiresAt.Sub(k.CreatedAt))
	}
	v, err := s.Verify(ctx, raw, client("10.0.0.1"))
	mustNot(t, err)
	if v.Key.ID != k.ID || v.DisplayID != "key_"+k.ID || v.ScopeList != "a weather:history" {
		t.Fatalf("verified %+v", v)
	}
	if !v.HasScopes([]string{"weather:history"}) || v.HasScopes([]string{"admin"}) {
		t.Fatal("HasScopes wrong")
	}

	// A key with the same ID and a valid checksum but another secret fails.
	other, err := apikey.Generate(nil, apikey.EnvLive)
	mustNot(t, err)
	forged := raw[:8+apikey.IDLen] + other.Raw[8+apikey.IDLen:len(other.Raw)-apikey.CheckLen]
	forged = fixChecksum(t, forged)
	for _, bad := range []string{"", "kw_live_nope", forged, raw + "x", strings.ToUpper(raw)} {
		if _, err := s.Verify(ctx, bad, client("10.0.0.1")); !errors.Is(err, apikey.ErrInvalid) {
			t.Errorf("Verify(%q) = %v, want ErrInvalid", bad, err)
		}
	}

	// The raw key, or its secret part, is nowhere in the database files.
	mustNot(t, db.Close())
	secret := raw[8+apikey.IDLen:]
	for _, f := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if bytes.Contains(b, []byte(secret)) {
			t.Fatalf("%s contains the key's secret", f)
		}
	}
}

// fixChecksum makes head (a key without checksum) well-formed, via Generate's rules.
func fixChecksum(t *testing.T, head string) string {
	t.Helper()
	return apikey.WithChecksum(head)
}

func TestRevokeIsSeenByAnotherProcessWithinASecond(t *testing.T) {
	db, path := openDB(t)
	c := newClock()
	server := newService(t, db, c)
	runCtx, cancel := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { server.Run(runCtx); close(ran) }()
	// Run writes on its way out: it must be done before the directory goes.
	defer func() { cancel(); <-ran }()

	raw, k := create(t, server, apikey.CreateParams{})
	if _, err := server.Verify(ctx, raw, client("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	// A second process (the CLI) opens the same file and revokes.
	db2, err := sqlite.Open(ctx, path)
	mustNot(t, err)
	defer func() { _ = db2.Close() }()
	cli := newService(t, db2, c)
	mustNot(t, cli.Revoke(ctx, k.ID, "test", "cli"))
	start := time.Now()
	for {
		_, err := server.Verify(ctx, raw, client("10.0.0.1"))
		if errors.Is(err, apikey.ErrInvalid) {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("revocation not seen after %v", time.Since(start))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestExpiryAndCIDR(t *testing.T) {
	db, _ := openDB(t)
	c := newClock()
	s := newService(t, db, c)
	raw, _ := create(t, s, apikey.CreateParams{TTL: time.Hour, CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}})
	if _, err := s.Verify(ctx, raw, client("10.1.2.3")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(ctx, raw, client("10.2.0.1")); !errors.Is(err, apikey.ErrInvalid) {
		t.Fatalf("outside CIDR: %v", err)
	}
	c.Add(time.Hour)
	if _, err := s.Verify(ctx, raw, client("10.1.2.3")); !errors.Is(err, apikey.ErrInvalid) {
		t.Fatalf("expired: %v", err)
	}
}

func TestRotateOverlap(t *testing.T) {
	db, _ := openDB(t)
	c := newClock()
	s := newService(t, db, c)
	old, k := create(t, s, apikey.CreateParams{})
	fresh, err := s.Rotate(ctx, "key_"+k.ID, overlapOf(10*time.Minute), "test")
	mustNot(t, err)
	if fresh == old || !strings.Contains(fresh, k.ID) {
		t.Fatalf("rotated key %q", fresh)
	}
	for _, raw := range []string{old, fresh} {
		if _, err := s.Verify(ctx, raw, client("10.0.0.1")); err != nil {
			t.Fatalf("during overlap: %v", err)
		}
	}
	c.Add(10 * time.Minute)
	if _, err := s.Verify(ctx, old, client("10.0.0.1")); !errors.Is(err, apikey.ErrInvalid) {
		t.Fatalf("old key after overlap: %v", err)
	}
	if _, err := s.Verify(ctx, fresh, client("10.0.0.1")); err != nil {
		t.Fatalf("new key after overlap: %v", err)
	}
	// Rotating with no overlap kills the current secret at once.
	newest, err := s.Rotate(ctx, k.ID, overlapOf(0), "test")
	mustNot(t, err)
	if _, err := s.Verify(ctx, fresh, client("10.0.0.1")); !errors.Is(err, apikey.ErrInvalid) {
		t.Fatalf("zero overlap: %v", err)
	}
	if _, err := s.Verify(ctx, newest, client("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rotate(ctx, k.ID, overlapOf(30*24*time.Hour), "test"); !errors.Is(err, apikey.ErrBadRequest) {
		t.Fatalf("overlap above max: %v", err)
	}
	mustNot(t, s.Revoke(ctx, k.ID, "", "test"))
	if _, err := s.Rotate(ctx, k.ID, overlapOf(0), "test"); !errors.Is(err, apikey.ErrRevoked) {
		t.Fatalf("rotate revoked: %v", err)
	}
}

func TestUpdateRules(t *testing.T) {
	db, _ := openDB(t)
	c := newClock()
	s := newService(t, db, c)
	raw, k := create(t, s, apikey.CreateParams{Scopes: []string{"a", "b"}})
	got, err := s.Update(ctx, k.ID, apikey.UpdateParams{Scopes: ptr([]string{"a"}), Rate: &apikey.Rate{Count: 5, Period: time.Second}}, "test")
	mustNot(t, err)
	if len(got.Scopes) != 1 || got.Rate.Count != 5 {
		t.Fatalf("updated %+v", got)
	}
	v, err := s.Verify(ctx, raw, client("10.0.0.1"))
	mustNot(t, err)
	if v.HasScopes([]string{"b"}) {
		t.Fatal("narrowed scope still held by the verifier")
	}
	tests := map[string]apikey.UpdateParams{
		"widen scopes":  {Scopes: ptr([]string{"a", "c"})},
		"extend expiry": {ExpiresAt: ptr(k.ExpiresAt.Add(time.Hour))},
		"bad rate":      {Rate: &apikey.Rate{Count: -1, Period: time.Second}},
		"bad quota":     {Quota: &apikey.Quota{Limit: 5, Period: "week"}},
		"bad name":      {Name: ptr("")},
	}
	for name, p := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := s.Update(ctx, k.ID, p, "test"); !errors.Is(err, apikey.ErrBadRequest) {
				t.Fatalf("err = %v, want ErrBadRequest", err)
			}
			after, _ := s.Get(ctx, k.ID)
			if strings.Join(after.Scopes, ",") != "a" || after.Rate.Count != 5 {
				t.Fatalf("a refused update changed the key: %+v", after)
			}
		})
	}
	if _, err := s.Update(ctx, "nope", apikey.UpdateParams{}, "test"); !errors.Is(err, apikey.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
}

func TestCreateRejects(t *testing.T) {
	db, _ := openDB(t)
	s := newService(t, db, newClock())
	tests := map[string]apikey.CreateParams{
		"no owner":    {Name: "x"},
		"bad owner":   {Name: "x", Owner: "root"},
		"bad env":     {Name: "x", Owner: "service:a", Env: "prod"},
		"bad scope":   {Name: "x", Owner: "service:a", Scopes: []string{"Has Space"}},
		"ttl too big": {Name: "x", Owner: "service:a", TTL: 2 * 365 * 24 * time.Hour},
		"ttl tiny":    {Name: "x", Owner: "service:a", TTL: time.Second},
		"quota":       {Name: "x", Owner: "service:a", Quota: apikey.Quota{Limit: 0, Period: apikey.QuotaDay}},
	}
	for name, p := range tests {
		t.Run(name, func(t *testing.T) {
			if _, _, err := s.Create(ctx, p, "test"); !errors.Is(err, apikey.ErrBadRequest) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	keys, err := s.List(ctx, "")
	mustNot(t, err)
	if len(keys) != 0 {
		t.Fatalf("refused creates left %d keys", len(keys))
	}
}

func TestQuotaNeverOverspends(t *testing.T) {
	db, _ := openDB(t)
	c := newClock()
	s := newService(t, db, c)
	raw, _ := create(t, s, apikey.CreateParams{Quota: apikey.Quota{Limit: 10, Period: apikey.QuotaTotal}})
	v, err := s.Verify(ctx, raw, client("10.0.0.1"))
	mustNot(t, err)
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for range 5 {
				if ok2, _ := s.ConsumeQuota(ctx, v); ok2 {
					ok.Add(1)
					s.Record(v, apikey.OutcomeOK)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 10 {
		t.Fatalf("quota of 10 admitted %d", ok.Load())
	}
	// A fresh service (a restart) remembers what was used.
	s.Flush(ctx)
	s2 := newService(t, db, c)
	v2, err := s2.Verify(ctx, raw, client("10.0.0.1"))
	mustNot(t, err)
	if ok, _ := s2.ConsumeQuota(ctx, v2); ok {
		t.Fatal("a restart refilled a spent credit")
	}

	rawDay, _ := create(t, s, apikey.CreateParams{Quota: apikey.Quota{Limit: 2, Period: apikey.QuotaDay}})
	vd, err := s.Verify(ctx, rawDay, client("10.0.0.1"))
	mustNot(t, err)
	for i, want := range []bool{true, true, false} {
		if got, _ := s.ConsumeQuota(ctx, vd); got != want {
			t.Fatalf("daily quota of 2: request %d admitted=%v", i+1, got)
		}
	}
	c.Add(24 * time.Hour)
	if ok, _ := s.ConsumeQuota(ctx, vd); !ok {
		t.Fatal("daily quota did not reset the next day")
	}
}

func TestLeakReport(t *testing.T) {
	db, _ := openDB(t)
	c := newClock()
	s := newService(t, db, c)
	raw, k := create(t, s, apikey.CreateParams{})
	bogus, _ := apikey.Generate(nil, apikey.EnvLive)
	for _, tt := range []struct {
		raw  string
		want bool
	}{{"not a key", false}, {bogus.Raw, false}, {raw, true}, {raw, true}} {
		got, err := s.ReportLeak(ctx, tt.raw, "https://github.com/x/y/blob/main/.env")
		mustNot(t, err)
		if got != tt.want {
			t.Fatalf("ReportLeak = %v, want %v", got, tt.want)
		}
	}
	if _, err := s.Verify(ctx, raw, client("10.0.0.1")); !errors.Is(err, apikey.ErrInvalid) {
		t.Fatal("a leaked key still works")
	}
	got, _ := s.Get(ctx, k.ID)
	if got.RevokedAt.IsZero() || !strings.HasPrefix(got.RevokeReason, "leaked") {
		t.Fatalf("key after leak: %+v", got)
	}
}

func TestAuditChainAndUsage(t *testing.T) {
	db, _ := openDB(t)
	c := newClock()
	s := newService(t, db, c)
	raw, k := create(t, s, apikey.CreateParams{})
	v, err := s.Verify(ctx, raw, client("10.0.0.1"))
	mustNot(t, err)
	s.Record(v, apikey.OutcomeOK)
	s.Record(v, apikey.OutcomeOK)
	s.Record(v, apikey.OutcomeForbidden)
	_, err = s.Rotate(ctx, k.ID, overlapOf(0), "test")
	mustNot(t, err)
	mustNot(t, s.Revoke(ctx, k.ID, "done", "test"))
	rows, err := s.UsageSince(ctx, k.ID, c.Now().Add(-time.Hour))
	mustNot(t, err)
	counts := map[apikey.Outcome]int64{}
	for _, r := range rows {
		counts[r.Outcome] += r.Count
	}
	if counts[apikey.OutcomeOK] != 2 || counts[apikey.OutcomeForbidden] != 1 {
		t.Fatalf("usage %v", counts)
	}
	got, _ := s.Get(ctx, k.ID)
	if got.LastUsedAt.IsZero() {
		t.Fatal("last used not recorded")
	}

	recs, err := db.AuditEvents(ctx, 0, 100)
	mustNot(t, err)
	var types []string
	prev := []byte{}
	for _, r := range recs {
		types = append(types, r.Event.Type)
		if !bytes.Equal(r.PrevHash, prev) || !bytes.Equal(audit.Chain(prev, r.Seq, r.Event), r.Hash) {
			t.Fatalf("audit chain broken at %d", r.Seq)
		}
		prev = r.Hash
		if strings.Contains(r.Event.Detail["reason"]+r.Event.Subject, raw) {
			t.Fatal("audit event carries the key")
		}
	}
	if strings.Join(types, ",") != "apikey.created,apikey.rotated,apikey.revoked" {
		t.Fatalf("audit types %v", types)
	}
}

func TestExpiryInThePastMeansNow(t *testing.T) {
	db, _ := openDB(t)
	c := newClock()
	s := newService(t, db, c)
	raw, k := create(t, s, apikey.CreateParams{TTL: time.Hour})
	ancient := time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)
	got, err := s.Update(ctx, k.ID, apikey.UpdateParams{ExpiresAt: &ancient}, "test")
	mustNot(t, err)
	if !got.ExpiresAt.Equal(c.Now()) {
		t.Fatalf("expires_at = %v, want now (%v)", got.ExpiresAt, c.Now())
	}
	stored, _ := s.Get(ctx, k.ID)
	if stored.ExpiresAt.After(c.Now()) {
		t.Fatalf("stored expiry %v is in the future", stored.ExpiresAt)
	}
	c.Add(48 * time.Hour)
	if _, err := s.Verify(ctx, raw, client("10.0.0.1")); !errors.Is(err, apikey.ErrInvalid) {
		t.Fatalf("a key expired by update still verifies: %v", err)
	}
}

// TestConcurrentUpdatesDoNotUndoEachOther runs two updaters of different
// fields at once: each update reads and writes in one transaction, so the
// end state holds both.
func TestConcurrentUpdatesDoNotUndoEachOther(t *testing.T) {
	db, path := openDB(t)
	c := newClock()
	s1 := newService(t, db, c)
	db2, err := sqlite.Open(ctx, path)
	mustNot(t, err)
	defer func() { _ = db2.Close() }()
	s2 := newService(t, db2, c)
	for i := range 10 {
		_, k := create(t, s1, apikey.CreateParams{Scopes: []string{"a", "b"}})
		var wg sync.WaitGroup
		wg.Go(func() {
			if _, err := s1.Update(ctx, k.ID, apikey.UpdateParams{Name: ptr("renamed")}, "a"); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if _, err := s2.Update(ctx, k.ID, apikey.UpdateParams{Scopes: ptr([]string{"a"})}, "b"); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		got, _ := s1.Get(ctx, k.ID)
		if got.Name != "renamed" || strings.Join(got.Scopes, ",") != "a" {
			t.Fatalf("round %d: lost update: %+v", i, got)
		}
	}
}

// gatedUsage holds AddUsage until released, to stage a flush in progress.
type gatedUsage struct {
	*sqlite.DB
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gatedUsage) AddUsage(ctx context.Context, d []apikey.UsageDelta, last map[string]time.Time) error {
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
	return g.DB.AddUsage(ctx, d, last)
}

// TestListWaitsForAFlushInProgress: a key listed while a background flush is
// writing its usage shows the last-used time of that usage (the portal once
// showed "3 requests" beside "Last used: never").
func TestListWaitsForAFlushInProgress(t *testing.T) {
	db, _ := openDB(t)
	c := newClock()
	g := &gatedUsage{DB: db, entered: make(chan struct{}), release: make(chan struct{})}
	s, err := apikey.New(ctx, apikey.Config{Store: db, Changes: db, Usage: g, Pepper: pepper(), Now: c.Now, Logger: quiet()})
	mustNot(t, err)
	raw, k := create(t, s, apikey.CreateParams{})
	v, err := s.Verify(ctx, raw, client("127.0.0.1"))
	mustNot(t, err)
	s.Record(v, apikey.OutcomeOK)

	go s.Flush(ctx) // the background flush, stuck in its write
	<-g.entered
	listed := make(chan []*apikey.Key, 1)
	go func() {
		keys, err := s.List(ctx, "")
		if err != nil {
			t.Error(err)
		}
		listed <- keys
	}()
	var keys []*apikey.Key
	select {
	case keys = <-listed: // a List that did not wait: it must still be right
	case <-time.After(200 * time.Millisecond):
		close(g.release)
		keys = <-listed
	}
	if len(keys) != 1 || keys[0].ID != k.ID || keys[0].LastUsedAt.IsZero() {
		t.Fatalf("listed %+v: the key was used, but its last-used time is missing", keys)
	}
	select {
	case <-g.release:
	default:
		close(g.release)
	}
}

func TestHasScopesNeedsEveryScope(t *testing.T) {
	v := &apikey.Verified{Key: &apikey.Key{Scopes: []string{"a", "c"}}}
	for _, tt := range []struct {
		want []string
		ok   bool
	}{
		{nil, true}, {[]string{"a"}, true}, {[]string{"a", "c"}, true},
		{[]string{"a", "b"}, false}, {[]string{"b", "a"}, false}, {[]string{"b"}, false}, {[]string{"c", "a", "b"}, false},
	} {
		if got := v.HasScopes(tt.want); got != tt.ok {
			t.Errorf("key [a c] HasScopes(%v) = %v, want %v", tt.want, got, tt.ok)
		}
	}
}

// tamperedStore serves every stored hash with one byte changed.
type tamperedStore struct {
	*sqlite.DB
	at int // byte index from the end: 1 is the last byte
}

func (s tamperedStore) GetKey(ctx context.Context, id string) (*apikey.Key, []apikey.Secret, error) {
	k, secrets, err := s.DB.GetKey(ctx, id)
	for i := range secrets {
		h := bytes.Clone(secrets[i].Hash)
		h[len(h)-s.at] ^= 0x01
		secrets[i].Hash = h
	}
	return k, secrets, err
}

// TestVerifyComparesTheWholeHash: a stored hash that differs from the
// presented key's only in its last byte (or its first) does not match.
func TestVerifyComparesTheWholeHash(t *testing.T) {
	db, _ := openDB(t)
	c := newClock()
	raw, _ := create(t, newService(t, db, c), apikey.CreateParams{})
	for _, at := range []int{1, 2, 16, 32} {
		s, err := apikey.New(ctx, apikey.Config{Store: tamperedStore{db, at}, Changes: db, Usage: db, Pepper: pepper(), Now: c.Now, Logger: quiet()})
		mustNot(t, err)
		if _, err := s.Verify(ctx, raw, client("127.0.0.1")); !errors.Is(err, apikey.ErrInvalid) {
			t.Fatalf("hash changed at byte -%d: Verify = %v, want ErrInvalid", at, err)
		}
	}
	if _, err := newService(t, db, c).Verify(ctx, raw, client("127.0.0.1")); err != nil {
		t.Fatalf("untampered: %v", err)
	}
}

// A verifier that fell behind a pruned change feed cannot know which keys
// changed in the part it missed: it must drop its cache rather than keep
// serving a key revoked there.
func TestAVerifierBehindAPrunedFeedDropsItsCache(t *testing.T) {
	db, path := openDB(t)
	c := newClock()
	server := newService(t, db, c) // not running: it polls when told to
	raw, k := create(t, server, apikey.CreateParams{})
	_, other := create(t, server, apikey.CreateParams{})
	mustNot(t, server.Poll(ctx))
	if _, err := server.Verify(ctx, raw, client("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	db2, err := sqlite.Open(ctx, path)
	mustNot(t, err)
	defer func() { _ = db2.Close() }()
	cli := newService(t, db2, c)
	mustNot(t, cli.Revoke(ctx, k.ID, "test", "cli"))
	_, err = cli.Update(ctx, other.ID, apikey.UpdateParams{Name: ptr("renamed")}, "cli")
	mustNot(t, err)
	// Everything but the newest entry (the rename) goes: the revocation
	// is no longer in the feed.
	n, err := db2.PruneChanges(ctx, time.Now().Add(24*time.Hour))
	mustNot(t, err)
	if n == 0 {
		t.Fatal("nothing pruned")
	}
	if _, _, err := db2.ChangesSince(ctx, 0); !errors.Is(err, apikey.ErrFeedTruncated) {
		t.Fatalf("reading from before the pruned part: %v, want ErrFeedTruncated", err)
	}
	mustNot(t, server.Poll(ctx))
	if _, err := server.Verify(ctx, raw, client("10.0.0.1")); !errors.Is(err, apikey.ErrInvalid) {
		t.Fatalf("a key revoked in the pruned part of the feed still verifies: %v", err)
	}
	// Having resynced, the verifier follows the feed as before.
	latest, err := db2.LatestChange(ctx)
	mustNot(t, err)
	if ch, last, err := db2.ChangesSince(ctx, latest); err != nil || len(ch) != 0 || last != latest {
		t.Fatalf("after the newest entry: %v %d %v", ch, last, err)
	}
	// Pruning again with nothing old enough changes nothing.
	if n, err := db2.PruneChanges(ctx, time.Unix(0, 0)); err != nil || n != 0 {
		t.Fatalf("second prune: %d %v", n, err)
	}
}

// flakyStore is a store whose reads fail while down, as when the network
// to a shared database is cut.
type flakyStore struct {
	*sqlite.DB
	down atomic.Bool
}

var errDown = errors.New("store unreachable")

func (f *flakyStore) GetKey(ctx context.Context, id string) (*apikey.Key, []apikey.Secret, error) {
	if f.down.Load() {
		return nil, nil, errDown
	}
	return f.DB.GetKey(ctx, id)
}

func (f *flakyStore) ChangesSince(ctx context.Context, seq int64) ([]apikey.Change, int64, error) {
	if f.down.Load() {
		return nil, seq, errDown
	}
	return f.DB.ChangesSince(ctx, seq)
}

// TestCachedKeysAreTrustedOnlyUntilTheStalenessBound cuts a verifier off
// from its store: a cached key keeps working until MaxStaleness after the
// change feed was last read (a revocation made elsewhere in that time
// could not be heard of), then verification fails rather than trusting
// the cache, and all is well again once the store answers.
func TestCachedKeysAreTrustedOnlyUntilTheStalenessBound(t *testing.T) {
	db, _ := openDB(t)
	c := newClock()
	flaky := &flakyStore{DB: db}
	s, err := apikey.New(ctx, apikey.Config{
		Store: flaky, Changes: flaky, Usage: db, Pepper: pepper(), Now: c.Now, Logger: quiet(),
		MaxStaleness: 5 * time.Second,
	})
	mustNot(t, err)
	raw, _ := create(t, s, apikey.CreateParams{})
	if _, err := s.Verify(ctx, raw, client("10.0.0.1")); err != nil {
		t.Fatalf("a new key: %v", err)
	}
	flaky.down.Store(true)
	if err := s.Poll(ctx); !errors.Is(err, errDown) {
		t.Fatalf("poll with the store down: %v", err)
	}
	c.Add(4 * time.Second)
	if _, err := s.Verify(ctx, raw, client("10.0.0.1")); err != nil {
		t.Fatalf("4s after the last read of the feed, the cached key: %v", err)
	}
	c.Add(2 * time.Second)
	if _, err := s.Verify(ctx, raw, client("10.0.0.1")); !errors.Is(err, errDown) {
		t.Fatalf("6s after the last read of the feed, the cached key: %v, want the store's error", err)
	}
	flaky.down.Store(false)
	mustNot(t, s.Poll(ctx))
	if _, err := s.Verify(ctx, raw, client("10.0.0.1")); err != nil {
		t.Fatalf("with the store back: %v", err)
	}
}

func overlapOf(d time.Duration) apikey.RotateParams { return apikey.RotateParams{Overlap: &d} }

// TestRotateDefaultsAndLifetime: a rotation that does not say keeps the
// old secret for DefaultOverlap (Get tells until when), and a rotation may
// give the key a new lifetime, never beyond MaxTTL.
func TestRotateDefaultsAndLifetime(t *testing.T) {
	db, _ := openDB(t)
	c := newClock()
	s := newService(t, db, c)
	old, k := create(t, s, apikey.CreateParams{TTL: 48 * time.Hour})
	fresh, err := s.Rotate(ctx, k.ID, apikey.RotateParams{}, "test")
	mustNot(t, err)
	got, err := s.Get(ctx, k.ID)
	mustNot(t, err)
	if want := c.Now().Add(apikey.DefaultOverlap); !got.OldSecretUntil.Equal(want) || !got.ExpiresAt.Equal(k.ExpiresAt) {
		t.Fatalf("after a default rotation: old secret until %v (want %v), expires %v (want %v)", got.OldSecretUntil, want, got.ExpiresAt, k.ExpiresAt)
	}
	c.Add(apikey.DefaultOverlap - time.Second)
	if _, err := s.Verify(ctx, old, client("10.0.0.1")); err != nil {
		t.Fatalf("the old secret within the default overlap: %v", err)
	}
	c.Add(time.Second)
	if _, err := s.Verify(ctx, old, client("10.0.0.1")); !errors.Is(err, apikey.ErrInvalid) {
		t.Fatalf("the old secret after the default overlap: %v", err)
	}
	if got, _ := s.Get(ctx, k.ID); got.OldSecretUntil.After(c.Now()) {
		t.Fatalf("no old secret works, yet Get says until %v", got.OldSecretUntil)
	}
	// A new lifetime: 30 days from now, past the old expiry.
	_, err = s.Rotate(ctx, k.ID, apikey.RotateParams{TTL: 30 * 24 * time.Hour}, "test")
	mustNot(t, err)
	got, _ = s.Get(ctx, k.ID)
	if want := c.Now().Add(30 * 24 * time.Hour); !got.ExpiresAt.Equal(want) {
		t.Fatalf("expiry after a rotation with a new lifetime: %v, want %v", got.ExpiresAt, want)
	}
	c.Add(3 * 24 * time.Hour) // past the key's first expiry
	if _, err := s.Verify(ctx, fresh, client("10.0.0.1")); !errors.Is(err, apikey.ErrInvalid) {
		t.Fatal("the secret retired by the second rotation still works")
	}
	for _, ttl := range []time.Duration{366 * 24 * time.Hour, time.Second, -time.Hour} {
		before, _ := s.Get(ctx, k.ID)
		if _, err := s.Rotate(ctx, k.ID, apikey.RotateParams{TTL: ttl}, "test"); !errors.Is(err, apikey.ErrBadRequest) {
			t.Fatalf("a new lifetime of %v: %v, want ErrBadRequest", ttl, err)
		}
		if after, _ := s.Get(ctx, k.ID); !after.ExpiresAt.Equal(before.ExpiresAt) {
			t.Fatal("a refused rotation changed the key")
		}
	}
}

// TestAdminKeysBelongToServices: no door can make a keyway:admin key
// owned by a person (the admin API would refuse it anyway).
func TestAdminKeysBelongToServices(t *testing.T) {
	db, _ := openDB(t)
	s := newService(t, db, newClock())
	_, _, err := s.Create(ctx, apikey.CreateParams{Name: "mine", Owner: "user:usr_ann", Scopes: []string{apikey.AdminScope}}, "cli")
	if !errors.Is(err, apikey.ErrBadRequest) || !strings.Contains(err.Error(), "service account") {
		t.Fatalf("an admin key owned by a person: %v, want a refusal that says why", err)
	}
	if keys, _ := s.List(ctx, ""); len(keys) != 0 {
		t.Fatal("a refused key was stored")
	}
	if _, _, err := s.Create(ctx, apikey.CreateParams{Name: "ops", Owner: "service:ops", Scopes: []string{apikey.AdminScope}}, "cli"); err != nil {
		t.Fatalf("an admin key owned by a service: %v", err)
	}
}

// TestIdleUsageCountersForgotten: the counters of a key nobody uses leave
// memory (so memory follows the keys in use, not every key ever used)
// without losing a count, even one made late through counters already
// dropped, and a quota is read back from the store when the key returns.
func TestIdleUsageCountersForgotten(t *testing.T) {
	db, _ := openDB(t)
	c := newClock()
	s := newService(t, db, c)
	raw, k := create(t, s, apikey.CreateParams{Quota: apikey.Quota{Limit: 5, Period: apikey.QuotaDay}})
	v, err := s.Verify(ctx, raw, client("10.0.0.1"))
	mustNot(t, err)
	for range 2 {
		if ok, _ := s.ConsumeQuota(ctx, v); !ok {
			t.Fatal("quota refused early")
		}
		s.Record(v, apikey.OutcomeOK)
	}
	s.Flush(ctx)
	if n := s.UsageEntries(); n != 1 {
		t.Fatalf("%d counters in memory, want 1", n)
	}
	c.Add(30 * time.Second) // still within StaleAfter + a minute
	s.Flush(ctx)
	if n := s.UsageEntries(); n != 1 {
		t.Fatalf("counters dropped too soon: %d", n)
	}
	c.Add(61 * time.Second)
	s.Flush(ctx)
	if n := s.UsageEntries(); n != 0 {
		t.Fatalf("%d counters of an idle key still in memory", n)
	}
	// A request that checked the key before and counts only now.
	if ok, _ := s.ConsumeQuota(ctx, v); !ok {
		t.Fatal("quota refused early")
	}
	s.Record(v, apikey.OutcomeOK)
	s.Flush(ctx)
	rows, err := s.UsageSince(ctx, k.ID, time.Time{})
	mustNot(t, err)
	var ok int64
	for _, r := range rows {
		if r.Outcome == apikey.OutcomeOK {
			ok += r.Count
		}
	}
	if ok != 3 {
		t.Fatalf("%d OK requests stored, want 3", ok)
	}
	// The key returns: new counters, its quota read from the store.
	v2, err := s.Verify(ctx, raw, client("10.0.0.1"))
	mustNot(t, err)
	for i, want := range []bool{true, true, false} {
		if got, _ := s.ConsumeQuota(ctx, v2); got != want {
			t.Fatalf("request %d after the counters came back: admitted=%v, want %v", i+4, got, want)
		}
	}
}

// TestCacheSweptOfStaleKeys: the verification cache holds the keys (and
// unknown IDs) seen within StaleAfter, not every one since the start; a
// swept key still verifies.
func TestCacheSweptOfStaleKeys(t *testing.T) {
	db, _ := openDB(t)
	c := newClock()
	s := newService(t, db, c)
	raw, _ := create(t, s, apikey.CreateParams{})
	unknown, _ := apikey.Generate(nil, apikey.EnvLive)
	_, err := s.Verify(ctx, raw, client("10.0.0.1"))
	mustNot(t, err)
	if _, err := s.Verify(ctx, unknown.Raw, client("10.0.0.1")); !errors.Is(err, apikey.ErrInvalid) {
		t.Fatalf("an unknown key: %v", err)
	}
	if n := s.CacheEntries(); n != 2 {
		t.Fatalf("%d cache entries, want the key and the unknown ID", n)
	}
	c.Add(10 * time.Second)
	s.SweepCache()
	if n := s.CacheEntries(); n != 2 {
		t.Fatalf("fresh entries swept: %d left", n)
	}
	c.Add(21 * time.Second) // past StaleAfter (30s)
	s.SweepCache()
	if n := s.CacheEntries(); n != 0 {
		t.Fatalf("%d stale entries kept", n)
	}
	if _, err := s.Verify(ctx, raw, client("10.0.0.1")); err != nil {
		t.Fatalf("a swept key: %v", err)
	}
}
