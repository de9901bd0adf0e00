package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"
)

// memTrail is a trail with checkpoints, in memory, that a test can tamper with.
type memTrail struct {
	recs []Record
	cps  []Checkpoint
}

func (m *memTrail) AuditEvents(_ context.Context, after int64, limit int) ([]Record, error) {
	var out []Record
	for _, r := range m.recs {
		if r.Seq > after && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *memTrail) RecentAuditEvents(context.Context, int) ([]Record, error) { return nil, nil }

func (m *memTrail) AuditHead(context.Context) (int64, []byte, error) {
	if len(m.recs) == 0 {
		return 0, nil, nil
	}
	r := m.recs[len(m.recs)-1]
	return r.Seq, r.Hash, nil
}

func (m *memTrail) AddAuditCheckpoint(_ context.Context, c Checkpoint) error {
	m.cps = append(m.cps, c)
	return nil
}

func (m *memTrail) AuditCheckpoints(_ context.Context, after int64, limit int) ([]Checkpoint, error) {
	var out []Checkpoint
	for _, c := range m.cps {
		if c.Seq > after && len(out) < limit {
			out = append(out, c)
		}
	}
	return out, nil
}

// append adds an event at the end of the chain.
func (m *memTrail) append(e Event) {
	prev, seq := []byte{}, int64(1)
	if n := len(m.recs); n > 0 {
		prev, seq = m.recs[n-1].Hash, m.recs[n-1].Seq+1
	}
	m.recs = append(m.recs, Record{Seq: seq, Event: e, PrevHash: prev, Hash: Chain(prev, seq, e)})
}

// rechain recomputes every hash from index i on, as an editor without the
// signing key would after changing an event.
func (m *memTrail) rechain(i int) {
	for ; i < len(m.recs); i++ {
		prev := []byte{}
		if i > 0 {
			prev = m.recs[i-1].Hash
		}
		m.recs[i].PrevHash = prev
		m.recs[i].Hash = Chain(prev, m.recs[i].Seq, m.recs[i].Event)
	}
}

func ev(i int) Event {
	return Event{At: time.Unix(1_700_000_000+int64(i), 0).UTC(), Type: KeyCreated, Actor: "cli", Subject: "key_" + string(rune('a'+i))}
}

// signedTrail is ten events with checkpoints at 0 (the empty trail, at
// start), 4 (an interval) and 10 (shutdown).
func signedTrail(t *testing.T, s *Signer) *memTrail {
	t.Helper()
	m := &memTrail{}
	cp := &Checkpointer{Store: m, Signer: s, Now: func() time.Time { return time.Unix(1_800_000_000, 123456789) }}
	sign := func() {
		if c, err := cp.Sign(context.Background()); err != nil || c == nil {
			t.Fatalf("sign: %+v %v", c, err)
		}
	}
	sign()
	for i := 1; i <= 10; i++ {
		m.append(ev(i))
		if i == 4 || i == 10 {
			sign()
		}
	}
	if c, _ := cp.Sign(context.Background()); c != nil {
		t.Fatal("an unmoved head was signed twice")
	}
	return m
}

func mustSigner(t *testing.T, b byte) *Signer {
	t.Helper()
	s, err := NewSigner(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCheckpointsCatchWhatTheChainCannot(t *testing.T) {
	key, thief := mustSigner(t, 1), mustSigner(t, 2)
	opts := func(m *memTrail) VerifyOptions {
		return VerifyOptions{Checkpoints: m, PublicKey: key.PublicKey(), RequireCheckpoint: true}
	}
	intact := signedTrail(t, key)
	rep, err := VerifyTrail(context.Background(), intact, opts(intact))
	if err != nil || rep.Broken != nil || rep.Events != 10 || rep.Checkpoints != 3 || rep.Unsigned != 0 || rep.LastCheckpoint.Seq != 10 {
		t.Fatalf("intact trail: %+v %v", rep, err)
	}

	tests := []struct {
		name   string
		tamper func(m *memTrail)
		seq    int64  // the event the report must name
		reason string // a word of the reason
	}{
		{"edited", func(m *memTrail) { m.recs[2].Event.Actor = "attacker" }, 3, "edited"},
		{"deleted", func(m *memTrail) { m.recs = append(m.recs[:4], m.recs[5:]...) }, 6, "deleted"},
		{"inserted", func(m *memTrail) {
			extra := m.recs[5]
			extra.Event.Subject = "key_forged"
			m.recs = append(m.recs[:6], append([]Record{extra}, m.recs[6:]...)...)
			for i := range m.recs {
				m.recs[i].Seq = int64(i + 1)
			}
		}, 7, "previous hash"},
		{"reordered", func(m *memTrail) {
			m.recs[6], m.recs[7] = m.recs[7], m.recs[6]
			m.recs[6].Seq, m.recs[7].Seq = 7, 8
		}, 7, "previous hash"},
		{"truncated", func(m *memTrail) { m.recs = m.recs[:8] }, 9, "deleted"},
		{"truncated to nothing", func(m *memTrail) { m.recs = nil }, 1, "deleted"},
		{"re-chained without the key", func(m *memTrail) {
			m.recs[6].Event.Actor = "attacker"
			m.rechain(6)
		}, 5, "rewritten"},
		{"re-chained and re-signed with another key", func(m *memTrail) {
			m.recs[6].Event.Actor = "attacker"
			m.rechain(6)
			m.cps[2] = thief.Sign(10, m.recs[9].Hash, m.cps[2].At)
		}, 10, "not by the audit key"},
		{"re-chained, checkpoint head edited", func(m *memTrail) {
			m.recs[6].Event.Actor = "attacker"
			m.rechain(6)
			m.cps[2].Head = m.recs[9].Hash
		}, 10, "does not verify"},
		{"every checkpoint deleted", func(m *memTrail) {
			m.recs[1].Event.Actor = "attacker"
			m.rechain(1)
			m.cps = nil
		}, 1, "no signed checkpoint"},
		{"a checkpoint's time edited", func(m *memTrail) { m.cps[1].At = m.cps[1].At.Add(time.Hour) }, 4, "does not verify"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := signedTrail(t, key)
			tc.tamper(m)
			rep, err := VerifyTrail(context.Background(), m, opts(m))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Broken == nil {
				t.Fatalf("not detected: %+v", rep)
			}
			if rep.Broken.Seq != tc.seq || !strings.Contains(rep.Broken.Reason, tc.reason) {
				t.Fatalf("reported %v; want event %d and %q", rep.Broken, tc.seq, tc.reason)
			}
		})
	}
}

func TestCheckpointSignatures(t *testing.T) {
	s := mustSigner(t, 3)
	again := mustSigner(t, 3)
	if !bytes.Equal(s.PublicKey(), again.PublicKey()) {
		t.Fatal("one secret gave two keys")
	}
	c := s.Sign(7, []byte("head"), time.Now())
	if !c.Verify(s.PublicKey()) || c.KeyID != KeyID(s.PublicKey()) {
		t.Fatal("a fresh checkpoint does not verify")
	}
	for name, edit := range map[string]func(*Checkpoint){
		"seq":  func(c *Checkpoint) { c.Seq++ },
		"head": func(c *Checkpoint) { c.Head = []byte("hea") },
		"at":   func(c *Checkpoint) { c.At = c.At.Add(time.Microsecond) },
		"sig":  func(c *Checkpoint) { c.Signature = bytes.Clone(c.Signature); c.Signature[0] ^= 1 },
	} {
		d := c
		edit(&d)
		if d.Verify(s.PublicKey()) {
			t.Errorf("a checkpoint with its %s changed verifies", name)
		}
	}
	if c.Verify(mustSigner(t, 4).PublicKey()) || c.Verify(ed25519.PublicKey("short")) {
		t.Error("a checkpoint verifies under another key")
	}
	if _, err := NewSigner([]byte("short")); err == nil {
		t.Error("a short secret made a signer")
	}
	if _, err := VerifyTrail(context.Background(), &memTrail{}, VerifyOptions{Checkpoints: &memTrail{}}); err == nil {
		t.Error("checkpoints were checked without a public key")
	}
}
