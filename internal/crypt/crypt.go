// Package crypt is keyway's envelope encryption of personal data.
//
// Every person has a data key of their own (DEK: 32 random bytes, AES-256-
// GCM). It is stored only wrapped, under a key-encryption key (KEK) that
// never lives in the database: a file made on first run, KEYWAY_KEK, or a
// command (package secret). Personal fields (usernames, display names,
// passkey names, where a session signed in from) are sealed under their
// owner's DEK, with associated data naming the table, column and row, so
// that a ciphertext copied to another row, column or person does not open.
// Look-ups use keyed hashes (Index), never the clear text.
//
// Data keys live in a key store apart from the database (KeyStore). Erasing
// a person deletes their data key: every copy of their fields, in the
// database and in its backups, becomes noise (crypto-shredding), while the
// pseudonymous audit trail stays whole.
//
// A KEK ring holds the current KEK first and older ones after it, so that
// keys wrapped before a rotation still open while Rotate rewraps them,
// online. A DEK wrapped under a KEK the ring does not know makes it read
// its source again: a node learns of a rotation made elsewhere by itself.
package crypt

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Errors callers branch on.
var (
	// ErrNoKey means the person has no data key: erased, or never made.
	ErrNoKey = errors.New("no data key")
	// ErrOpen means a ciphertext does not open: tampered with, moved to
	// another row, or sealed under another key.
	ErrOpen = errors.New("ciphertext does not open")
	// ErrUnknownKEK means a data key is wrapped under a KEK the ring does
	// not hold, even after reading its source again.
	ErrUnknownKEK = errors.New("data key wrapped under an unknown KEK")
)

// version is the first byte of every ciphertext and wrapped key.
const version = 1

// KEK is one key-encryption key.
type KEK struct {
	// ID names it in stored wrapped keys: 8 bytes of a hash, in hex. It
	// reveals nothing of the key.
	ID   string
	aead cipher.AEAD
	// transient seals what belongs to no one yet (SealTransient).
	transient cipher.AEAD
}

func newKEK(secret []byte) (KEK, error) {
	k, err := hkdf.Key(sha256.New, secret, nil, "keyway kek v1", 32)
	if err != nil {
		return KEK{}, err
	}
	idKey, err := hkdf.Key(sha256.New, secret, nil, "keyway kek id v1", 8)
	if err != nil {
		return KEK{}, err
	}
	aead, err := newGCM(k)
	if err != nil {
		return KEK{}, err
	}
	tk, err := hkdf.Key(sha256.New, secret, nil, "keyway transient v1", 32)
	if err != nil {
		return KEK{}, err
	}
	transient, err := newGCM(tk)
	if err != nil {
		return KEK{}, err
	}
	return KEK{ID: hex.EncodeToString(idKey), aead: aead, transient: transient}, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Ring is the KEKs: the current one first, then those it replaced.
type Ring struct {
	// load reads the ring's source again: each secret, current first.
	load func() ([][]byte, error)

	mu   sync.Mutex
	keks []KEK
	// lastMiss is when a miss last read the source again: a flood of keys
	// under unknown KEKs reads it at most once a second.
	lastMiss time.Time
}

// NewRing reads the ring from load, which returns the KEK secrets, the
// current first; it is called again when a wrapped key names a KEK the
// ring does not hold (at most once a second).
func NewRing(load func() ([][]byte, error)) (*Ring, error) {
	r := &Ring{load: load}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Ring) reload() error {
	secrets, err := r.load()
	if err != nil {
		return err
	}
	if len(secrets) == 0 {
		return errors.New("the KEK source holds no key")
	}
	keks := make([]KEK, 0, len(secrets))
	for _, s := range secrets {
		k, err := newKEK(s)
		if err != nil {
			return err
		}
		keks = append(keks, k)
	}
	r.mu.Lock()
	r.keks = keks
	r.mu.Unlock()
	return nil
}

// Reload reads the ring's source again: a node learns of a KEK put first
// elsewhere, and wraps new data keys under it from then on.
func (r *Ring) Reload() error { return r.reload() }

// Current is the KEK that wraps new data keys.
func (r *Ring) Current() KEK {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keks[0]
}

// IDs are the IDs of the ring's KEKs, the current first.
func (r *Ring) IDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, len(r.keks))
	for i, k := range r.keks {
		ids[i] = k.ID
	}
	return ids
}

func (r *Ring) byID(id string) (KEK, error) {
	find := func() (KEK, bool, bool) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, k := range r.keks {
			if k.ID == id {
				return k, true, false
			}
		}
		if time.Since(r.lastMiss) < time.Second {
			return KEK{}, false, false
		}
		r.lastMiss = time.Now()
		return KEK{}, false, true
	}
	k, ok, stale := find()
	if ok {
		return k, nil
	}
	if stale {
		if err := r.reload(); err != nil {
			return KEK{}, fmt.Errorf("read the KEK source again: %w", err)
		}
		if k, ok, _ = find(); ok {
			return k, nil
		}
	}
	return KEK{}, fmt.Errorf("%w %s: restore it to the KEK source (older keys go after the current one)", ErrUnknownKEK, id)
}

// WrappedKey is a data key as stored: sealed under a KEK.
type WrappedKey struct {
	UserID string
	KEKID  string
	// Wrapped is version, nonce and AES-256-GCM of the key, with the user
	// ID and KEK ID as associated data.
	Wrapped   []byte
	CreatedAt time.Time
}

func wrapAD(userID, kekID string) []byte {
	return []byte("keyway dek v1\x00" + userID + "\x00" + kekID)
}

func (k KEK) wrap(userID string, dek []byte) WrappedKey {
	return WrappedKey{UserID: userID, KEKID: k.ID, Wrapped: seal(k.aead, dek, wrapAD(userID, k.ID))}
}

func (k KEK) unwrap(w WrappedKey) ([]byte, error) {
	dek, err := open(k.aead, w.Wrapped, wrapAD(w.UserID, k.ID))
	if err != nil || len(dek) != 32 {
		return nil, fmt.Errorf("data key of %s: %w", w.UserID, ErrOpen)
	}
	return dek, nil
}

func seal(aead cipher.AEAD, plain, ad []byte) []byte {
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce) // crypto/rand never fails (Go 1.24+)
	out := make([]byte, 0, 1+len(nonce)+len(plain)+aead.Overhead())
	out = append(append(out, version), nonce...)
	return aead.Seal(out, nonce, plain, ad)
}

func open(aead cipher.AEAD, ct, ad []byte) ([]byte, error) {
	n := aead.NonceSize()
	if len(ct) < 1+n+aead.Overhead() || ct[0] != version {
		return nil, ErrOpen
	}
	p, err := aead.Open(nil, ct[1:1+n], ct[1+n:], ad)
	if err != nil {
		return nil, ErrOpen
	}
	return p, nil
}

// KeyStore keeps wrapped data keys, apart from the data they open.
type KeyStore interface {
	// PutDataKey stores a new data key; a person has at most one.
	PutDataKey(ctx context.Context, k WrappedKey) error
	// DataKey returns the person's data key, or ErrNoKey.
	DataKey(ctx context.Context, userID string) (WrappedKey, error)
	// DeleteDataKey deletes it; deleting a key that is gone is not an error.
	DeleteDataKey(ctx context.Context, userID string) error
	// DataKeys lists data keys whose user ID sorts after after, at most limit, in order.
	DataKeys(ctx context.Context, after string, limit int) ([]WrappedKey, error)
	// SwapDataKey replaces old by next if it is still stored as old,
	// and reports whether it did.
	SwapDataKey(ctx context.Context, old, next WrappedKey) (bool, error)
}

// Field names where a sealed value lives. Its parts are the associated
// data: a ciphertext opens only in the field it was sealed for.
type Field struct {
	Table, Column, Row string
	// UserID owns the value: their data key seals it.
	UserID string
}

func (f Field) ad() []byte {
	return []byte("keyway field v1\x00" + f.Table + "\x00" + f.Column + "\x00" + f.Row + "\x00" + f.UserID)
}

// Sealer seals and opens personal fields under their owner's data key.
type Sealer struct {
	ring  *Ring
	keys  KeyStore
	index []byte

	mu    sync.Mutex
	cache map[string]cachedKey
	// opened keeps what Open opened lately, by field and ciphertext, so
	// that a value read on every request (the display name a session
	// route forwards) is decrypted once a while, not per request.
	opened map[string]cachedValue
	swept  time.Time
}

type cachedValue struct {
	plain string
	field Field
	at    time.Time
}

type cachedKey struct {
	aead cipher.AEAD
	at   time.Time
}

// Cache bounds: a data key opened recently is kept in memory, unwrapped,
// for a while, so that a page listing sessions unwraps once; so is a value
// opened recently.
var cacheTTL = 30 * time.Second // a variable for tests

const cacheMax = 4096

// NewSealer seals with the data keys of keys, wrapped under ring;
// indexKey (32 bytes or more) keys the look-up hashes.
func NewSealer(ring *Ring, keys KeyStore, indexKey []byte) (*Sealer, error) {
	if len(indexKey) < 32 {
		return nil, errors.New("crypt: the index key must be at least 32 bytes")
	}
	return &Sealer{ring: ring, keys: keys, index: bytes.Clone(indexKey), cache: map[string]cachedKey{}, opened: map[string]cachedValue{}}, nil
}

// Ring is the sealer's KEK ring.
func (s *Sealer) Ring() *Ring { return s.ring }

// Index is the keyed hash of value for look-ups (a blind index): equal
// values give equal hashes, and without the key a hash says nothing. kind
// separates the uses of one value.
func (s *Sealer) Index(kind, value string) []byte {
	m := hmac.New(sha256.New, s.index)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return m.Sum(nil)
}

// NewUserKey makes and stores the data key of a new person.
func (s *Sealer) NewUserKey(ctx context.Context, userID string) error {
	dek := make([]byte, 32)
	_, _ = rand.Read(dek)
	w := s.ring.Current().wrap(userID, dek)
	w.CreatedAt = time.Now().UTC()
	if err := s.keys.PutDataKey(ctx, w); err != nil {
		return fmt.Errorf("store data key: %w", err)
	}
	return nil
}

// Check unwraps one stored data key, to find a wrong or missing KEK at
// start rather than at a person's first request. It reports whether the
// key store holds any data key.
func (s *Sealer) Check(ctx context.Context) (bool, error) {
	page, err := s.keys.DataKeys(ctx, "", 1)
	if err != nil || len(page) == 0 {
		return false, err
	}
	kek, err := s.ring.byID(page[0].KEKID)
	if err != nil {
		return true, err
	}
	_, err = kek.unwrap(page[0])
	return true, err
}

// EnsureUserKey makes the person's data key if they have none: a person
// stored before data keys existed.
func (s *Sealer) EnsureUserKey(ctx context.Context, userID string) error {
	_, err := s.keys.DataKey(ctx, userID)
	if errors.Is(err, ErrNoKey) {
		return s.NewUserKey(ctx, userID)
	}
	return err
}

func (s *Sealer) dataKey(ctx context.Context, userID string) (cipher.AEAD, error) {
	s.mu.Lock()
	c, ok := s.cache[userID]
	s.mu.Unlock()
	if ok && time.Since(c.at) < cacheTTL {
		return c.aead, nil
	}
	w, err := s.keys.DataKey(ctx, userID)
	if err != nil {
		return nil, err
	}
	kek, err := s.ring.byID(w.KEKID)
	if err != nil {
		return nil, err
	}
	dek, err := kek.unwrap(w)
	if err != nil {
		return nil, err
	}
	aead, err := newGCM(dek)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.sweepLocked()
	if len(s.cache) >= cacheMax {
		clear(s.cache)
	}
	s.cache[userID] = cachedKey{aead: aead, at: time.Now()}
	s.mu.Unlock()
	return aead, nil
}

// sweepLocked drops what has expired from both caches, at most once per
// cacheTTL: the caches hold the people active lately, not everyone ever
// seen.
func (s *Sealer) sweepLocked() {
	now := time.Now()
	if now.Sub(s.swept) < cacheTTL {
		return
	}
	s.swept = now
	for k, c := range s.cache {
		if now.Sub(c.at) >= cacheTTL {
			delete(s.cache, k)
		}
	}
	for k, v := range s.opened {
		if now.Sub(v.at) >= cacheTTL {
			delete(s.opened, k)
		}
	}
}

// Seal seals plain for f.
func (s *Sealer) Seal(ctx context.Context, f Field, plain string) ([]byte, error) {
	aead, err := s.dataKey(ctx, f.UserID)
	if err != nil {
		return nil, fmt.Errorf("seal %s.%s: %w", f.Table, f.Column, err)
	}
	return seal(aead, []byte(plain), f.ad()), nil
}

// Open opens what Seal sealed for f. A person whose data key is gone
// (erased) has ErrNoKey.
func (s *Sealer) Open(ctx context.Context, f Field, ct []byte) (string, error) {
	aead, err := s.dataKey(ctx, f.UserID)
	if err != nil {
		return "", fmt.Errorf("open %s.%s of %s: %w", f.Table, f.Column, f.Row, err)
	}
	p, err := open(aead, ct, f.ad())
	if err != nil {
		return "", fmt.Errorf("open %s.%s of %s: %w", f.Table, f.Column, f.Row, err)
	}
	return string(p), nil
}

// OpenCached is Open for a value read on every request (the display name a
// session route forwards): what it opened lately is kept, by ciphertext
// and field, so that it decrypts once a while, not per request. Values
// read now and then (a session's device, a passkey's name) use Open, so
// that the cache holds the people active lately and nothing else.
func (s *Sealer) OpenCached(ctx context.Context, f Field, ct []byte) (string, error) {
	// A hit must be for the same field: a ciphertext moved to another
	// field misses, and is opened (and refused) for real.
	s.mu.Lock()
	v, ok := s.opened[string(ct)]
	s.mu.Unlock()
	if ok && v.field == f && time.Since(v.at) < cacheTTL {
		return v.plain, nil
	}
	p, err := s.Open(ctx, f, ct)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.sweepLocked()
	if len(s.opened) >= cacheMax {
		clear(s.opened)
	}
	s.opened[string(ct)] = cachedValue{plain: p, field: f, at: time.Now()}
	s.mu.Unlock()
	return p, nil
}

// ForgetCache drops every unwrapped data key and opened value held in
// memory (for benchmarks of a cold start, and tests).
func (s *Sealer) ForgetCache() {
	s.mu.Lock()
	clear(s.cache)
	clear(s.opened)
	s.mu.Unlock()
}

// Forget deletes the person's data key: whatever was sealed under it,
// wherever a copy of it is, stays sealed for ever.
func (s *Sealer) Forget(ctx context.Context, userID string) error {
	s.mu.Lock()
	delete(s.cache, userID)
	clear(s.opened) // erasures are rare: forget every opened value
	s.mu.Unlock()
	return s.keys.DeleteDataKey(ctx, userID)
}

// SealTransient seals a short-lived value that belongs to no one yet, such
// as a sign-up in progress (its username and display name), under a key
// derived from the current KEK, bound to f like any field.
func (s *Sealer) SealTransient(f Field, plain []byte) []byte {
	k := s.ring.Current()
	id, _ := hex.DecodeString(k.ID) // made by hex.EncodeToString
	return append(id, seal(k.transient, plain, f.ad())...)
}

// OpenTransient opens what SealTransient sealed for f.
func (s *Sealer) OpenTransient(f Field, ct []byte) ([]byte, error) {
	if len(ct) < 8 {
		return nil, ErrOpen
	}
	k, err := s.ring.byID(hex.EncodeToString(ct[:8]))
	if err != nil {
		return nil, err
	}
	return open(k.transient, ct[8:], f.ad())
}

// KeyCounts counts the stored data keys by the ID of the KEK that wraps them.
func (s *Sealer) KeyCounts(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	for after := ""; ; {
		page, err := s.keys.DataKeys(ctx, after, 500)
		if err != nil {
			return nil, err
		}
		for _, w := range page {
			out[w.KEKID]++
			after = w.UserID
		}
		if len(page) < 500 {
			return out, nil
		}
	}
}

// RotateReport says what Rotate did.
type RotateReport struct {
	// KEK is the ID of the KEK every data key is now wrapped under.
	KEK string
	// Rewrapped is how many data keys moved to it; Current how many were
	// under it already.
	Rewrapped, Current int
}

// Rotate rewraps every data key that is not under the current KEK, one at
// a time, while the keys are in use: each swap is conditional, so a key
// deleted or rewrapped meanwhile is left as it is.
func (s *Sealer) Rotate(ctx context.Context) (*RotateReport, error) {
	cur := s.ring.Current()
	rep := &RotateReport{KEK: cur.ID}
	for after := ""; ; {
		page, err := s.keys.DataKeys(ctx, after, 500)
		if err != nil {
			return rep, err
		}
		for _, w := range page {
			after = w.UserID
			if w.KEKID == cur.ID {
				rep.Current++
				continue
			}
			old, err := s.ring.byID(w.KEKID)
			if err != nil {
				return rep, err
			}
			dek, err := old.unwrap(w)
			if err != nil {
				return rep, err
			}
			next := cur.wrap(w.UserID, dek)
			next.CreatedAt = w.CreatedAt
			ok, err := s.keys.SwapDataKey(ctx, w, next)
			if err != nil {
				return rep, err
			}
			if ok {
				rep.Rewrapped++
			}
		}
		if len(page) < 500 {
			return rep, nil
		}
	}
}
