package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
)

// A hash chain catches an edited, deleted, inserted or reordered event,
// but not a tail cut off, nor a chain rewritten from some event on with
// fresh hashes: both leave a chain that verifies. A Checkpoint closes those
// gaps. It is the head of the chain (its last event and that event's hash)
// signed with an Ed25519 key derived from a secret kept outside the
// database. keyway signs one at intervals and when it stops; a tail cut
// below the newest checkpoint, or a chain rewritten beneath any checkpoint,
// no longer matches a signature its editor cannot make.

// Checkpoint is a signed statement that event Seq of the trail has hash Head.
type Checkpoint struct {
	// Seq is the last event the checkpoint covers.
	Seq int64
	// Head is that event's hash.
	Head []byte
	// At is when it was signed.
	At time.Time
	// KeyID names the signing key: the first 8 bytes of SHA-256 of its
	// public key, in hex.
	KeyID string
	// Signature is Ed25519 over the checkpoint's message.
	Signature []byte
}

// checkpointMessage is what a checkpoint signs: a fixed label, then the
// sequence number, the time in Unix nanoseconds and the head.
func checkpointMessage(seq int64, head []byte, at time.Time) []byte {
	msg := make([]byte, 0, 32+16+len(head))
	msg = append(msg, "keyway audit checkpoint v1\x00"...)
	msg = binary.BigEndian.AppendUint64(msg, uint64(seq)) //nolint:gosec // G115: seq is a positive row id
	msg = binary.BigEndian.AppendUint64(msg, uint64(at.UnixNano()))
	return append(msg, head...)
}

// KeyID names a public key in checkpoints and messages.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Verify reports whether c is signed by pub.
func (c *Checkpoint) Verify(pub ed25519.PublicKey) bool {
	return len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, checkpointMessage(c.Seq, c.Head, c.At), c.Signature)
}

// Signer signs checkpoints.
type Signer struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	id   string
}

// NewSigner derives the signing key from secret (32 bytes or more, from
// package secret): one secret, one key, on every node.
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("audit signing secret: %d bytes, want at least 32", len(secret))
	}
	seed, err := hkdf.Key(sha256.New, secret, nil, "keyway audit checkpoints v1", ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	return &Signer{priv: priv, pub: pub, id: KeyID(pub)}, nil
}

// PublicKey is the key that verifies this signer's checkpoints.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.pub }

// Sign makes the checkpoint of event seq, whose hash is head, at at.
func (s *Signer) Sign(seq int64, head []byte, at time.Time) Checkpoint {
	at = at.UTC().Truncate(time.Microsecond) // what every store keeps exactly
	return Checkpoint{Seq: seq, Head: append([]byte{}, head...), At: at, KeyID: s.id,
		Signature: ed25519.Sign(s.priv, checkpointMessage(seq, head, at))}
}

// Appender writes an event that goes with no stored change of its own: a
// config reload, say. Every store implements it.
type Appender interface {
	AppendAudit(ctx context.Context, ev Event) error
}

// CheckpointStore keeps checkpoints. Every store implements it.
type CheckpointStore interface {
	// AuditHead returns the newest event's sequence number and hash; 0 and
	// nil when the trail is empty.
	AuditHead(ctx context.Context) (int64, []byte, error)
	// AddAuditCheckpoint stores c. A checkpoint of the same event that is
	// already stored (another node signed it first) is not an error.
	AddAuditCheckpoint(ctx context.Context, c Checkpoint) error
	// AuditCheckpoints returns the checkpoints of events after seq,
	// oldest first, at most limit.
	AuditCheckpoints(ctx context.Context, after int64, limit int) ([]Checkpoint, error)
}

// Checkpointer signs the head of a trail when it has moved.
type Checkpointer struct {
	Store  CheckpointStore
	Signer *Signer
	// Now is the clock; time.Now when nil.
	Now    func() time.Time
	last   int64
	signed bool
}

// Sign signs the trail's head if no checkpoint of this Checkpointer covers
// it yet, and returns the checkpoint it stored (nil when the head had not
// moved). The first call signs even an empty trail (event 0, an empty
// head): from then on, a store whose trail has no checkpoint at all lost
// them.
func (c *Checkpointer) Sign(ctx context.Context) (*Checkpoint, error) {
	seq, head, err := c.Store.AuditHead(ctx)
	if err != nil {
		return nil, fmt.Errorf("read audit head: %w", err)
	}
	if c.signed && seq == c.last {
		return nil, nil
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	cp := c.Signer.Sign(seq, head, now())
	if err := c.Store.AddAuditCheckpoint(ctx, cp); err != nil {
		return nil, fmt.Errorf("store audit checkpoint: %w", err)
	}
	c.last, c.signed = seq, true
	return &cp, nil
}
