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
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
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
