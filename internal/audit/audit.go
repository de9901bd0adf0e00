// Package audit defines keyway's security audit events and the hash chain
// that makes their log tamper-evident.
//
// Invariants: every state change that matters (a key created, rotated,
// revoked, reported leaked, deleted; later sign-ins, passkeys, sessions and
// admin actions) is written as an Event in the same transaction as the change
// itself, so there is no change without its record and no record without its
// change. Each stored event carries the hash of the one before it; editing,
// deleting or reordering a row breaks the chain from that row on. Events name
// things by ID and never carry secrets or personal data.
package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Event is one security-relevant fact.
type Event struct {
	// At is when it happened.
	At time.Time
	// Type is a stable dotted name, such as "apikey.created".
	Type string
	// Actor is who did it: "cli", "admin:<key id>", "user:<id>", "leak-report", "system".
	Actor string
	// Subject is what it was done to, such as "key_<id>".
	Subject string
	// Detail holds extra facts. Never secrets.
	Detail map[string]string
	// From is the client address the event came from, when known. It is
	// personal data: the store never keeps it in clear, but seals it into
	// Origin (under the acting person's data key, so that erasing them
	// shreds it too) and leaves From empty on what it reads back.
	From string
	// Origin is From, sealed (package crypt), as stored and chained.
	Origin []byte
}

type fromKey struct{}

// WithFrom returns ctx carrying the address of the client a request came
// from: the events its changes write say so (sealed by the store), without
// every service passing the address along.
func WithFrom(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, fromKey{}, addr)
}

// FromContext is the address WithFrom put in ctx, or "".
func FromContext(ctx context.Context) string {
	s, _ := ctx.Value(fromKey{}).(string)
	return s
}

// The event types of API keys.
const (
	KeyCreated = "apikey.created"
	KeyUpdated = "apikey.updated"
	KeyRotated = "apikey.rotated"
	KeyRevoked = "apikey.revoked"
	KeyLeaked  = "apikey.leak_reported"
	KeyDeleted = "apikey.deleted"
)

// Chain returns the hash of an event stored at seq after the event whose
// hash is prev. The encoding is fixed: a version byte, then the sequence
// number, the time in Unix nanoseconds and each field length-prefixed, so no
// two different events encode alike. An event with an Origin is version 2
// and chains it too; one without encodes as every event did before.
func Chain(prev []byte, seq int64, e Event) []byte {
	h := sha256.New()
	var n [8]byte
	version := byte(1)
	if len(e.Origin) > 0 {
		version = 2
	}
	h.Write([]byte{version})
	writeField(h, prev)
	binary.BigEndian.PutUint64(n[:], uint64(seq)) //nolint:gosec // G115: seq is a positive row id
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(e.At.UnixNano()))
	h.Write(n[:])
	writeField(h, []byte(e.Type))
	writeField(h, []byte(e.Actor))
	writeField(h, []byte(e.Subject))
	writeField(h, DetailJSON(e.Detail))
	if version == 2 {
		writeField(h, e.Origin)
	}
	return h.Sum(nil)
}

// Valid is e with every text field valid UTF-8 (a byte that is not is
// replaced by U+FFFD), as the store keeps it and the chain hashes it. An
// event must read back as it was hashed: encoding/json writes a stray
// byte as the escape \ufffd but reads it back as the character, so
// without this one byte a client chose (a leak report's source cut in
// the middle of a character) would make the chain fail to verify from
// that event on, and hide any real tampering after it.
func (e Event) Valid() Event {
	valid := func(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
	e.Type, e.Actor, e.Subject = valid(e.Type), valid(e.Actor), valid(e.Subject)
	if len(e.Detail) > 0 {
		d := make(map[string]string, len(e.Detail))
		for k, v := range e.Detail {
			d[valid(k)] = valid(v)
		}
		e.Detail = d
	}
	return e
}

// Clip makes s valid UTF-8 without control characters, at most n bytes,
// cut on a character's boundary: for what a client sends that an event
// or a record keeps.
func Clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, ""))
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// DetailJSON is the canonical encoding of Detail (sorted keys).
func DetailJSON(d map[string]string) []byte {
	if len(d) == 0 {
		return []byte("{}")
	}
	b, err := json.Marshal(d) // encoding/json sorts map keys
	if err != nil {
		return []byte("{}")
	}
	return b
}

func writeField(h interface{ Write([]byte) (int, error) }, b []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b))) //nolint:gosec // G115: fields are far below 4 GiB
	_, _ = h.Write(n[:])
	_, _ = h.Write(b)
}

// The event types of sessions.
const (
	SessionCreated = "session.created"
	SessionRevoked = "session.revoked"
	SessionStepUp  = "session.step_up"
)

// The event types of the running server.
const (
	ConfigReloaded      = "config.reloaded"
	ConfigReloadRefused = "config.reload_refused"
	KEKRotated          = "kek.rotated"
)

// The event types of people, passkeys and sign-in.
const (
	UserCreated         = "user.created"
	UserRolesChanged    = "user.roles_changed"
	UserErased          = "user.erased"
	UserExported        = "user.exported"
	PasskeyAdded        = "passkey.added"
	PasskeyRenamed      = "passkey.renamed"
	PasskeyRemoved      = "passkey.removed"
	SignIn              = "auth.sign_in"
	SignInFailed        = "auth.sign_in_failed"
	RecoveryCodesIssued = "recovery.codes_issued"
	RecoveryUsed        = "recovery.used"
	InviteCreated       = "invite.created"
	CloneWarning        = "passkey.clone_warning"
	BackupFlagChanged   = "passkey.backup_eligibility_changed"
)

// Record is one stored event with its chain fields.
type Record struct {
	Seq      int64
	Event    Event
	PrevHash []byte
	Hash     []byte
}

// ChainError says where a chain stops verifying.
type ChainError struct {
	Seq    int64
	Reason string
}

func (e *ChainError) Error() string {
	return "audit chain broken at event " + strconv.FormatInt(e.Seq, 10) + ": " + e.Reason
}

// Verifier checks a chain one record at a time, in order. The zero value
// starts at the first record.
type Verifier struct {
	prev    []byte
	lastSeq int64
	n       int64
}

// Add checks the next record and returns a *ChainError when it does not
// follow: a gap in the sequence (a deleted row), a previous-hash that is
// not the last hash (a reordered or inserted row), or a hash that does not
// match the content (an edited row).
func (v *Verifier) Add(r Record) error {
	switch {
	case r.Seq != v.lastSeq+1:
		return &ChainError{Seq: r.Seq, Reason: "sequence gap after " + strconv.FormatInt(v.lastSeq, 10) + " (a row was deleted)"}
	case !bytes.Equal(r.PrevHash, v.prev):
		return &ChainError{Seq: r.Seq, Reason: "previous hash does not match (rows were reordered or inserted)"}
	case !bytes.Equal(Chain(r.PrevHash, r.Seq, r.Event), r.Hash):
		return &ChainError{Seq: r.Seq, Reason: "hash does not match the content (the row was edited)"}
	}
	v.prev, v.lastSeq = r.Hash, r.Seq
	v.n++
	return nil
}

// Count is how many records verified.
func (v *Verifier) Count() int64 { return v.n }

// Head is the hash of the last verified record, which an operator can
// write down or ship elsewhere to detect a truncated or rewritten tail.
func (v *Verifier) Head() []byte { return v.prev }

// Reader reads a stored trail. Every store implements it.
type Reader interface {
	// AuditEvents returns the records after seq, oldest first, at most
	// limit.
	AuditEvents(ctx context.Context, after int64, limit int) ([]Record, error)
	// RecentAuditEvents returns the newest n records, newest first.
	RecentAuditEvents(ctx context.Context, n int) ([]Record, error)
}

// Report is the outcome of VerifyTrail.
type Report struct {
	// Events is how many records verified.
	Events int64
	// Head is the hash of the last verified record: keep it elsewhere to
	// detect a rewritten or truncated tail later.
	Head []byte
	// Checkpoints is how many signed checkpoints matched the chain.
	Checkpoints int64
	// LastCheckpoint is the newest of them; nil if none.
	LastCheckpoint *Checkpoint
	// Unsigned is how many events came after LastCheckpoint: events no
	// signature vouches for yet (the next checkpoint will).
	Unsigned int64
	// Broken, when not nil, is where the trail stops verifying.
	Broken *ChainError
}

// VerifyOptions says how far VerifyTrail trusts the trail.
type VerifyOptions struct {
	// Checkpoints, when set, are checked against the chain: each must be
	// signed by PublicKey and match the hash of the event it names, and
	// none may name an event past the end of the trail.
	Checkpoints CheckpointStore
	// PublicKey verifies checkpoints. Required with Checkpoints.
	PublicKey []byte
	// RequireCheckpoint makes a trail with events but no checkpoint a
	// broken one: with checkpoints on, keyway signs one when it starts, so
	// none at all means they were deleted.
	RequireCheckpoint bool
}

// verifyPage is how many records VerifyTrail reads at a time.
const verifyPage = 1000

// VerifyTrail walks a whole stored trail, page by page, and checks its
// hash chain and, with opts.Checkpoints, its signed checkpoints. An error
// is a failure to read; a broken trail is a Report with Broken set, naming
// the first event that does not verify.
func VerifyTrail(ctx context.Context, r Reader, opts VerifyOptions) (*Report, error) {
	if opts.Checkpoints != nil && len(opts.PublicKey) != ed25519.PublicKeySize {
		return nil, errors.New("verify audit trail: checkpoints need the audit public key")
	}
	var v Verifier
	rep := &Report{}
	cps := &cpCursor{store: opts.Checkpoints, after: -1} // -1: from the checkpoint of event 0
	lastSigned := int64(0)
	finish := func(broken *ChainError) (*Report, error) {
		rep.Events, rep.Head, rep.Broken = v.Count(), v.Head(), broken
		rep.Unsigned = v.lastSeq - lastSigned
		return rep, nil
	}
	// The checkpoint of event 0 says the trail was empty when first signed.
	if cp, err := cps.peek(ctx); err != nil {
		return nil, err
	} else if cp != nil && cp.Seq <= 0 {
		if broken := checkCheckpoint(cp, opts.PublicKey); broken != nil {
			return finish(broken)
		}
		if cp.Seq < 0 || len(cp.Head) != 0 {
			return finish(&ChainError{Seq: cp.Seq, Reason: "a checkpoint names no event"})
		}
		rep.Checkpoints++
		rep.LastCheckpoint = cp
		cps.pop()
	}
	for after := int64(0); ; {
		recs, err := r.AuditEvents(ctx, after, verifyPage)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			if err := v.Add(rec); err != nil {
				return finish(err.(*ChainError)) //nolint:errorlint,forcetypeassert // Add returns only *ChainError
			}
			after = rec.Seq
			for {
				cp, err := cps.peek(ctx)
				if err != nil {
					return nil, err
				}
				if cp == nil || cp.Seq > rec.Seq {
					break
				}
				if broken := checkCheckpoint(cp, opts.PublicKey); broken != nil {
					return finish(broken)
				}
				if cp.Seq < rec.Seq || !bytes.Equal(cp.Head, rec.Hash) {
					return finish(&ChainError{Seq: lastSigned + 1, Reason: fmt.Sprintf(
						"events %d to %d were rewritten: the hash of event %d is not the head signed at %s",
						lastSigned+1, cp.Seq, cp.Seq, cp.At.Format(time.RFC3339))})
				}
				lastSigned = cp.Seq
				rep.Checkpoints++
				rep.LastCheckpoint = cp
				cps.pop()
			}
		}
		if len(recs) < verifyPage {
			break
		}
	}
	cp, err := cps.peek(ctx)
	if err != nil {
		return nil, err
	}
	if cp != nil {
		if broken := checkCheckpoint(cp, opts.PublicKey); broken != nil {
			return finish(broken)
		}
		return finish(&ChainError{Seq: v.lastSeq + 1, Reason: fmt.Sprintf(
			"the trail ends at event %d but a checkpoint signed at %s covers event %d: events %d to %d were deleted",
			v.lastSeq, cp.At.Format(time.RFC3339), cp.Seq, v.lastSeq+1, cp.Seq)})
	}
	if opts.RequireCheckpoint && v.Count() > 0 && rep.Checkpoints == 0 {
		return finish(&ChainError{Seq: 1, Reason: "no signed checkpoint covers the trail: they were deleted, or the trail was written with checkpoints off"})
	}
	return finish(nil)
}

// checkCheckpoint checks a checkpoint's signature.
func checkCheckpoint(cp *Checkpoint, pub ed25519.PublicKey) *ChainError {
	if cp.Verify(pub) {
		return nil
	}
	if cp.KeyID != KeyID(pub) {
		return &ChainError{Seq: cp.Seq, Reason: fmt.Sprintf("the checkpoint of this event is signed by key %s, not by the audit key %s (forged, or the key changed)", cp.KeyID, KeyID(pub))}
	}
	return &ChainError{Seq: cp.Seq, Reason: "the checkpoint of this event has a signature that does not verify (forged or edited)"}
}

// cpCursor reads checkpoints a page at a time.
type cpCursor struct {
	store CheckpointStore
	buf   []Checkpoint
	after int64
	done  bool
}

func (c *cpCursor) peek(ctx context.Context) (*Checkpoint, error) {
	if c.store == nil {
		return nil, nil
	}
	if len(c.buf) == 0 && !c.done {
		page, err := c.store.AuditCheckpoints(ctx, c.after, verifyPage)
		if err != nil {
			return nil, fmt.Errorf("read audit checkpoints: %w", err)
		}
		c.buf, c.done = page, len(page) < verifyPage
		if len(page) > 0 {
			c.after = page[len(page)-1].Seq
		}
	}
	if len(c.buf) == 0 {
		return nil, nil
	}
	return &c.buf[0], nil
}

func (c *cpCursor) pop() { c.buf = c.buf[1:] }
