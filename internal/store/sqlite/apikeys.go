package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/store/sealed"
)

var (
	_ apikey.Store      = (*DB)(nil)
	_ apikey.ChangeFeed = (*DB)(nil)
	_ apikey.UsageStore = (*DB)(nil)
)

const keyColumns = `id, name, owner, env, scopes, rate_count, rate_period, rate_burst,
	quota_limit, quota_period, cidrs, created_at, expires_at, revoked_at, revoke_reason, last_used_at, client,
	(SELECT MAX(s.not_after) FROM api_key_secrets s WHERE s.key_id = api_keys.id) AS old_secret_until`

// inTx runs fn in one transaction and commits it, or rolls it back on error.
func (d *DB) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// appendAudit chains ev after the newest audit event. It runs inside the
// caller's write transaction, which SQLite serialises, so the chain cannot fork.
func (d *DB) appendAudit(ctx context.Context, tx *sql.Tx, ev audit.Event) error {
	var prev []byte
	var last int64
	err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&last, &prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read audit chain: %w", err)
	}
	if prev == nil {
		prev = []byte{}
	}
	// Rows are never deleted (a trigger forbids it), so the next seq is last+1.
	seq := last + 1
	ev = ev.Valid() // stored and chained alike
	if ev.From == "" {
		ev.From = audit.FromContext(ctx)
	}
	if err := sealed.SealOrigin(ctx, d.sealer, seq, &ev); err != nil {
		return fmt.Errorf("seal the event's origin: %w", err)
	}
	var origin any // NULL when unknown
	if len(ev.Origin) > 0 {
		origin = ev.Origin
	}
	hash := audit.Chain(prev, seq, ev)
	_, err = tx.ExecContext(ctx, `INSERT INTO audit_events (seq, at, type, actor, subject, detail, prev_hash, hash, origin)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		seq, ev.At.UnixNano(), ev.Type, ev.Actor, ev.Subject, string(audit.DetailJSON(ev.Detail)), prev, hash, origin)
	if err != nil {
		return fmt.Errorf("append audit event: %w", err)
	}
	return nil
}

func appendChange(ctx context.Context, tx *sql.Tx, id string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO api_key_changes (key_id, at) VALUES (?, ?)`, id, at.UnixNano())
	if err != nil {
		return fmt.Errorf("append key change: %w", err)
	}
	return nil
}

// CreateKey implements apikey.Store.
func (d *DB) CreateKey(ctx context.Context, k *apikey.Key, hash []byte, ev audit.Event) error {
	scopes, cidrs, err := encodeLists(k)
	if err != nil {
		return err
	}
	return d.inTx(ctx, func(tx *sql.Tx) error {
		if id, ok := strings.CutPrefix(k.Owner, "user:"); ok {
			// In the key's transaction: an erasure that deleted the
			// person is either before it (refused here) or after it (and
			// its sweep finds the key).
			var one int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = ?`, id).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: owner %s is not a known person", apikey.ErrBadRequest, k.Owner)
			}
			if err != nil {
				return fmt.Errorf("check the key's owner: %w", err)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO api_keys (id, name, owner, env, scopes, rate_count, rate_period, rate_burst,
			quota_limit, quota_period, cidrs, created_at, expires_at, client) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			k.ID, k.Name, k.Owner, string(k.Env), scopes, k.Rate.Count, int64(k.Rate.Period), k.Rate.Burst,
			k.Quota.Limit, string(k.Quota.Period), cidrs, k.CreatedAt.UnixNano(), k.ExpiresAt.UnixNano(), k.Client)
		if err != nil {
			return fmt.Errorf("insert api key: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO api_key_secrets (key_id, hash, created_at) VALUES (?, ?, ?)`,
			k.ID, hash, k.CreatedAt.UnixNano()); err != nil {
			return fmt.Errorf("insert api key secret: %w", err)
		}
		if err := appendChange(ctx, tx, k.ID, k.CreatedAt); err != nil {
			return err
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

func encodeLists(k *apikey.Key) (string, string, error) {
	scopes := k.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	s, err := json.Marshal(scopes)
	if err != nil {
		return "", "", err
	}
	cidrs := make([]string, len(k.CIDRs))
	for i, p := range k.CIDRs {
		cidrs[i] = p.String()
	}
	c, err := json.Marshal(cidrs)
	if err != nil {
		return "", "", err
	}
	return string(s), string(c), nil
}

type rowScanner interface{ Scan(dest ...any) error }

func scanKey(r rowScanner) (*apikey.Key, error) {
	var (
		k                        apikey.Key
		env, scopes, cidrs, qp   string
		ratePeriod, created, exp int64
		revoked, lastUsed, old   sql.NullInt64
	)
	if err := r.Scan(&k.ID, &k.Name, &k.Owner, &env, &scopes, &k.Rate.Count, &ratePeriod, &k.Rate.Burst,
		&k.Quota.Limit, &qp, &cidrs, &created, &exp, &revoked, &k.RevokeReason, &lastUsed, &k.Client, &old); err != nil {
		return nil, err
	}
	if old.Valid {
		k.OldSecretUntil = time.Unix(0, old.Int64).UTC()
	}
	k.Env, k.Quota.Period, k.Rate.Period = apikey.Env(env), apikey.QuotaPeriod(qp), time.Duration(ratePeriod)
	k.CreatedAt, k.ExpiresAt = time.Unix(0, created).UTC(), time.Unix(0, exp).UTC()
	if revoked.Valid {
		k.RevokedAt = time.Unix(0, revoked.Int64).UTC()
	}
	if lastUsed.Valid {
		k.LastUsedAt = time.Unix(0, lastUsed.Int64).UTC()
	}
	if err := json.Unmarshal([]byte(scopes), &k.Scopes); err != nil {
		return nil, fmt.Errorf("key %s scopes: %w", k.ID, err)
	}
	var cs []string
	if err := json.Unmarshal([]byte(cidrs), &cs); err != nil {
		return nil, fmt.Errorf("key %s cidrs: %w", k.ID, err)
	}
	for _, c := range cs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("key %s cidr: %w", k.ID, err)
		}
		k.CIDRs = append(k.CIDRs, p)
	}
	return &k, nil
}

// GetKey implements apikey.Store.
func (d *DB) GetKey(ctx context.Context, id string) (*apikey.Key, []apikey.Secret, error) {
	k, err := scanKey(d.sql.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, apikey.ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("get api key: %w", err)
	}
	rows, err := d.sql.QueryContext(ctx, `SELECT hash, created_at, not_after FROM api_key_secrets WHERE key_id = ?`, id)
	if err != nil {
		return nil, nil, fmt.Errorf("get api key secrets: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var secrets []apikey.Secret
	for rows.Next() {
		var s apikey.Secret
		var created int64
		var notAfter sql.NullInt64
		if err := rows.Scan(&s.Hash, &created, &notAfter); err != nil {
			return nil, nil, err
		}
		s.CreatedAt = time.Unix(0, created).UTC()
		if notAfter.Valid {
			s.NotAfter = time.Unix(0, notAfter.Int64).UTC()
		}
		secrets = append(secrets, s)
	}
	return k, secrets, rows.Err()
}

// ListKeys implements apikey.Store. An empty owner lists every key.
func (d *DB) ListKeys(ctx context.Context, owner string) ([]*apikey.Key, error) {
	q := `SELECT ` + keyColumns + ` FROM api_keys`
	args := []any{}
	if owner != "" {
		q += ` WHERE owner = ?`
		args = append(args, owner)
	}
	rows, err := d.sql.QueryContext(ctx, q+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var keys []*apikey.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// errNoRows is what mustAffect returns when a statement changed nothing;
// each caller maps it to its own domain's not-found error.
var errNoRows = errors.New("no row changed")

// mustAffect turns "no row changed" into errNoRows.
func mustAffect(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return errNoRows
	}
	return nil
}

// keyNotFound maps errNoRows to apikey.ErrNotFound.
func keyNotFound(err error) error {
	if errors.Is(err, errNoRows) {
		return apikey.ErrNotFound
	}
	return err
}

// UpdateKey implements apikey.Store. The transaction takes the write lock
// at BEGIN, so the read, the change and the write are one atomic step.
func (d *DB) UpdateKey(ctx context.Context, id string, mutate func(*apikey.Key) (audit.Event, error)) error {
	return d.inTx(ctx, func(tx *sql.Tx) error {
		k, err := scanKey(tx.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return apikey.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("read api key: %w", err)
		}
		ev, err := mutate(k)
		if err != nil {
			return err
		}
		scopes, cidrs, err := encodeLists(k)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET name = ?, scopes = ?, rate_count = ?, rate_period = ?,
			rate_burst = ?, quota_limit = ?, quota_period = ?, cidrs = ?, expires_at = ? WHERE id = ?`,
			k.Name, scopes, k.Rate.Count, int64(k.Rate.Period), k.Rate.Burst, k.Quota.Limit, string(k.Quota.Period),
			cidrs, k.ExpiresAt.UnixNano(), k.ID); err != nil {
			return fmt.Errorf("update api key: %w", err)
		}
		if err := appendChange(ctx, tx, k.ID, ev.At); err != nil {
			return err
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// RotateKey implements apikey.Store.
func (d *DB) RotateKey(ctx context.Context, id string, hash []byte, notAfter, expiresAt time.Time, ev audit.Event) error {
	return d.inTx(ctx, func(tx *sql.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM api_keys WHERE id = ?`, id).Scan(&one); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return apikey.ErrNotFound
			}
			return err
		}
		// Retire the current secret, and shorten (never lengthen) older overlaps.
		if _, err := tx.ExecContext(ctx, `UPDATE api_key_secrets SET not_after = ?
			WHERE key_id = ? AND (not_after IS NULL OR not_after > ?)`, notAfter.UnixNano(), id, notAfter.UnixNano()); err != nil {
			return fmt.Errorf("retire secret: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM api_key_secrets WHERE key_id = ? AND not_after IS NOT NULL AND not_after <= ?`,
			id, ev.At.UnixNano()); err != nil {
			return fmt.Errorf("drop dead secrets: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO api_key_secrets (key_id, hash, created_at) VALUES (?, ?, ?)`,
			id, hash, ev.At.UnixNano()); err != nil {
			return fmt.Errorf("insert secret: %w", err)
		}
		if !expiresAt.IsZero() {
			if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET expires_at = ? WHERE id = ?`, expiresAt.UnixNano(), id); err != nil {
				return fmt.Errorf("set expiry: %w", err)
			}
		}
		if err := appendChange(ctx, tx, id, ev.At); err != nil {
			return err
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// RevokeKey implements apikey.Store.
func (d *DB) RevokeKey(ctx context.Context, id string, at time.Time, reason string, ev audit.Event) error {
	return d.inTx(ctx, func(tx *sql.Tx) error {
		err := keyNotFound(mustAffect(tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?),
			revoke_reason = CASE WHEN revoked_at IS NULL THEN ? ELSE revoke_reason END WHERE id = ?`, at.UnixNano(), reason, id)))
		if err != nil {
			return err
		}
		if err := appendChange(ctx, tx, id, at); err != nil {
			return err
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// DeleteKey implements apikey.Store. Usage rows go with the key; the audit
// trail keeps the record that it existed.
func (d *DB) DeleteKey(ctx context.Context, id string, ev audit.Event) error {
	return d.inTx(ctx, func(tx *sql.Tx) error {
		if err := keyNotFound(mustAffect(tx.ExecContext(ctx, `DELETE FROM api_keys WHERE id = ?`, id))); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM api_key_usage WHERE key_id = ?`, id); err != nil {
			return err
		}
		if err := appendChange(ctx, tx, id, ev.At); err != nil {
			return err
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// ChangesSince implements apikey.ChangeFeed.
func (d *DB) ChangesSince(ctx context.Context, seq int64) ([]apikey.Change, int64, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT seq, key_id FROM api_key_changes WHERE seq > ? ORDER BY seq LIMIT 10000`, seq)
	if err != nil {
		return nil, seq, fmt.Errorf("read key changes: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []apikey.Change
	last := seq
	for rows.Next() {
		var c apikey.Change
		if err := rows.Scan(&c.Seq, &c.KeyID); err != nil {
			return nil, seq, err
		}
		out = append(out, c)
		last = c.Seq
	}
	if err := rows.Err(); err != nil {
		return nil, seq, err
	}
	// Read after the changes: a prune that came first shows here; one that
	// came after only makes the verifier resync for nothing.
	pruned, err := d.changesPrunedThrough(ctx)
	if err != nil {
		return nil, seq, err
	}
	if seq < pruned {
		return nil, seq, apikey.ErrFeedTruncated
	}
	return out, last, nil
}

const prunedThroughKey = "api_key_changes_pruned_through"

// changesPrunedThrough is the newest sequence number that PruneChanges may
// have deleted (0: none).
func (d *DB) changesPrunedThrough(ctx context.Context) (int64, error) {
	var v sql.NullString
	err := d.sql.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, prunedThroughKey).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) || !v.Valid {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v.String, 10, 64)
}

// LatestChange returns the newest change sequence number, where a verifier
// that starts with an empty cache begins to follow the feed.
func (d *DB) LatestChange(ctx context.Context) (int64, error) {
	var seq int64
	err := d.sql.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM api_key_changes`).Scan(&seq)
	return seq, err
}

// PruneChanges drops change-feed entries older than before, keeping the
// newest, and records how far it pruned, so that a verifier still behind
// that point learns it missed changes (apikey.ErrFeedTruncated) instead of
// missing them silently. It returns how many entries it dropped.
func (d *DB) PruneChanges(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		var through sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT MAX(seq) FROM api_key_changes
			WHERE at < ? AND seq < (SELECT MAX(seq) FROM api_key_changes)`, before.UnixNano()).Scan(&through); err != nil {
			return err
		}
		if !through.Valid {
			return nil
		}
		// The mark first: it only ever grows.
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = CAST(MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)`,
			prunedThroughKey, strconv.FormatInt(through.Int64, 10)); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM api_key_changes WHERE seq <= ?`, through.Int64)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

// AddUsage implements apikey.UsageStore.
func (d *DB) AddUsage(ctx context.Context, deltas []apikey.UsageDelta, lastUsed map[string]time.Time) error {
	return d.inTx(ctx, func(tx *sql.Tx) error {
		for _, u := range deltas {
			if _, err := tx.ExecContext(ctx, `INSERT INTO api_key_usage (key_id, hour, outcome, count) VALUES (?, ?, ?, ?)
				ON CONFLICT (key_id, hour, outcome) DO UPDATE SET count = count + excluded.count`,
				u.KeyID, u.Hour.UTC().Format(hourLayout), string(u.Outcome), u.Count); err != nil {
				return fmt.Errorf("add usage: %w", err)
			}
		}
		for id, at := range lastUsed {
			if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE id = ?`,
				at.UnixNano(), id); err != nil {
				return fmt.Errorf("update last used: %w", err)
			}
		}
		return nil
	})
}

const hourLayout = "2006-01-02T15"

// UsageSince implements apikey.UsageStore.
func (d *DB) UsageSince(ctx context.Context, id string, since time.Time) ([]apikey.UsageRow, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT hour, outcome, count FROM api_key_usage WHERE key_id = ? AND hour >= ? ORDER BY hour, outcome`,
		id, since.UTC().Format(hourLayout))
	if err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []apikey.UsageRow
	for rows.Next() {
		var hour, outcome string
		var r apikey.UsageRow
		if err := rows.Scan(&hour, &outcome, &r.Count); err != nil {
			return nil, err
		}
		t, err := time.Parse(hourLayout, hour)
		if err != nil {
			return nil, fmt.Errorf("usage hour %q: %w", hour, err)
		}
		r.Hour, r.Outcome = t.UTC(), apikey.Outcome(outcome)
		out = append(out, r)
	}
	return out, rows.Err()
}

// CountUsage implements apikey.UsageStore.
func (d *DB) CountUsage(ctx context.Context, id string, outcome apikey.Outcome, since time.Time) (int64, error) {
	var n int64
	err := d.sql.QueryRowContext(ctx, `SELECT COALESCE(SUM(count), 0) FROM api_key_usage WHERE key_id = ? AND outcome = ? AND hour >= ?`,
		id, string(outcome), since.UTC().Format(hourLayout)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count usage: %w", err)
	}
	return n, nil
}

// AuditRecord is one stored audit event with its chain fields.
type AuditRecord = audit.Record

// RecentAuditEvents returns the newest n audit events, newest first.
func (d *DB) RecentAuditEvents(ctx context.Context, n int) ([]AuditRecord, error) {
	var last int64
	if err := d.sql.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit_events`).Scan(&last); err != nil {
		return nil, err
	}
	recs, err := d.AuditEvents(ctx, max(0, last-int64(n)), n)
	if err != nil {
		return nil, err
	}
	slices.Reverse(recs)
	return recs, nil
}

// AuditEvents returns stored audit events after seq, oldest first, at most limit.
func (d *DB) AuditEvents(ctx context.Context, after int64, limit int) ([]AuditRecord, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT seq, at, type, actor, subject, detail, prev_hash, hash, origin
		FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit events: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []AuditRecord
	for rows.Next() {
		var r AuditRecord
		var at int64
		var detail string
		if err := rows.Scan(&r.Seq, &at, &r.Event.Type, &r.Event.Actor, &r.Event.Subject, &detail, &r.PrevHash, &r.Hash, &r.Event.Origin); err != nil {
			return nil, err
		}
		r.Event.At = time.Unix(0, at).UTC()
		if err := json.Unmarshal([]byte(detail), &r.Event.Detail); err != nil {
			return nil, fmt.Errorf("audit %d detail: %w", r.Seq, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
