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
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"strconv"
	"time"
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
// two different events encode alike.
func Chain(prev []byte, seq int64, e Event) []byte {
	h := sha256.New()
	var n [8]byte
	h.Write([]byte{1})
	writeField(h, prev)
	binary.BigEndian.PutUint64(n[:], uint64(seq)) //nolint:gosec // G115: seq is a positive row id
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(e.At.UnixNano()))
	h.Write(n[:])
	writeField(h, []byte(e.Type))
	writeField(h, []byte(e.Actor))
	writeField(h, []byte(e.Subject))
	writeField(h, DetailJSON(e.Detail))
	return h.Sum(nil)
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

// The event types of people, passkeys and sign-in.
const (
	UserCreated         = "user.created"
	UserRolesChanged    = "user.roles_changed"
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
	// Broken, when not nil, is where the chain stops verifying.
	Broken *ChainError
}

// verifyPage is how many records VerifyTrail reads at a time.
const verifyPage = 1000

// VerifyTrail walks a whole stored trail, page by page, and checks its
// hash chain. An error is a failure to read; a broken chain is a Report
// with Broken set.
func VerifyTrail(ctx context.Context, r Reader) (*Report, error) {
	var v Verifier
	rep := &Report{}
	for after := int64(0); ; {
		recs, err := r.AuditEvents(ctx, after, verifyPage)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			if err := v.Add(rec); err != nil {
				rep.Broken = err.(*ChainError) //nolint:errorlint // Add returns only *ChainError
				rep.Events, rep.Head = v.Count(), v.Head()
				return rep, nil
			}
			after = rec.Seq
		}
		if len(recs) < verifyPage {
			break
		}
	}
	rep.Events, rep.Head = v.Count(), v.Head()
	return rep, nil
}
