package audit

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func chain(n int) []Record {
	var out []Record
	prev := []byte{}
	for i := 1; i <= n; i++ {
		e := Event{At: time.Unix(int64(i), 0), Type: KeyCreated, Actor: "cli", Subject: "key_x", Detail: map[string]string{"i": string(rune('a' + i))}}
		h := Chain(prev, int64(i), e)
		out = append(out, Record{Seq: int64(i), Event: e, PrevHash: prev, Hash: h})
		prev = h
	}
	return out
}

func verify(rs []Record) error {
	var v Verifier
	for _, r := range rs {
		if err := v.Add(r); err != nil {
			return err
		}
	}
	return nil
}

func TestVerifierCatchesTampering(t *testing.T) {
	if err := verify(chain(5)); err != nil {
		t.Fatalf("intact chain: %v", err)
	}
	tests := map[string]func([]Record) []Record{
		"edited":    func(rs []Record) []Record { rs[2].Event.Actor = "attacker"; return rs },
		"detail":    func(rs []Record) []Record { rs[2].Event.Detail = map[string]string{"i": "z"}; return rs },
		"deleted":   func(rs []Record) []Record { return append(rs[:2], rs[3:]...) },
		"reordered": func(rs []Record) []Record { rs[1], rs[2] = rs[2], rs[1]; rs[1].Seq, rs[2].Seq = 2, 3; return rs },
		"rehashed": func(rs []Record) []Record {
			rs[2].Event.Actor = "x"
			rs[2].Hash = Chain(rs[2].PrevHash, 3, rs[2].Event)
			return rs
		},
		"time": func(rs []Record) []Record { rs[0].Event.At = rs[0].Event.At.Add(time.Second); return rs },
	}
	for name, tamper := range tests {
		t.Run(name, func(t *testing.T) {
			err := verify(tamper(chain(5)))
			var ce *ChainError
			if !errors.As(err, &ce) {
				t.Fatalf("tampering not detected: %v", err)
			}
		})
	}
}

// sliceTrail is a Reader over records in memory.
type sliceTrail struct {
	recs  []Record
	calls int
}

func (s *sliceTrail) AuditEvents(_ context.Context, after int64, limit int) ([]Record, error) {
	s.calls++
	var out []Record
	for _, r := range s.recs {
		if r.Seq > after && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *sliceTrail) RecentAuditEvents(_ context.Context, n int) ([]Record, error) {
	return nil, errors.New("not used")
}

// VerifyTrail reads a trail longer than a page, page by page, and stops at
// the first broken record, with the count and head before it.
func TestVerifyTrailAcrossPages(t *testing.T) {
	recs := chain(2*verifyPage + 5)
	tr := &sliceTrail{recs: recs}
	rep, err := VerifyTrail(context.Background(), tr, VerifyOptions{})
	if err != nil || rep.Broken != nil || rep.Events != int64(len(recs)) || !bytes.Equal(rep.Head, recs[len(recs)-1].Hash) {
		t.Fatalf("intact trail: %+v %v", rep, err)
	}
	if tr.calls != 3 {
		t.Fatalf("%d reads for %d records, want 3 pages", tr.calls, len(recs))
	}
	recs[verifyPage+10].Event.Actor = "attacker"
	rep, err = VerifyTrail(context.Background(), &sliceTrail{recs: recs}, VerifyOptions{})
	if err != nil || rep.Broken == nil || rep.Broken.Seq != int64(verifyPage+11) || rep.Events != int64(verifyPage+10) ||
		!bytes.Equal(rep.Head, recs[verifyPage+9].Hash) {
		t.Fatalf("edited in the second page: %+v %v", rep, err)
	}
}

// TestChainOfOrigins: an event's sealed origin is chained (version 2), and
// an event without one hashes as every event did before it existed.
func TestChainOfOrigins(t *testing.T) {
	e := Event{At: time.Unix(1, 0), Type: KeyCreated, Actor: "cli", Subject: "key_x"}
	v1 := Chain(nil, 1, e)
	e.From = "192.0.2.1" // never chained: the store seals it into Origin
	if !bytes.Equal(Chain(nil, 1, e), v1) {
		t.Fatal("From changed the hash")
	}
	e.Origin = []byte("sealed-a")
	a := Chain(nil, 1, e)
	e.Origin = []byte("sealed-b")
	if bytes.Equal(a, v1) || bytes.Equal(a, Chain(nil, 1, e)) {
		t.Fatal("the origin is not chained")
	}
}
