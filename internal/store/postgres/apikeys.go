package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/store/sealed"
)

var (
	_ apikey.Store      = (*DB)(nil)
	_ apikey.ChangeFeed = (*DB)(nil)
	_ apikey.UsageStore = (*DB)(nil)
	_ audit.Reader      = (*DB)(nil)
)

const keyColumns = `id, name, owner, env, scopes, rate_count, rate_period, rate_burst,
	quota_limit, quota_period, cidrs, created_at, expires_at, revoked_at, revoke_reason, last_used_at, client,
	(SELECT MAX(s.not_after) FROM api_key_secrets s WHERE s.key_id = api_keys.id) AS old_secret_until`

// keyChannel is the channel a committed key change is announced on (see Listen).
const keyChannel = "keyway_key_changes"

// unixTime reads a nullable Unix-nanosecond column.
func unixTime(ns *int64) time.Time {
	if ns == nil {
		return time.Time{}
	}
	return time.Unix(0, *ns).UTC()
}

// appendAudit chains ev after the newest audit event. The journal lock,
// held until the caller's transaction ends, makes the read of the chain's
// head and the append one step across every node: the chain never forks
// and its sequence numbers have no gaps.
func (d *DB) appendAudit(ctx context.Context, tx pgx.Tx, ev audit.Event) error {
	if err := lock(ctx, tx, lockJournal); err != nil {
		return err
	}
	var prev []byte
	var last int64
	err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&last, &prev)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read audit chain: %w", err)
	}
	if prev == nil {
		prev = []byte{}
	}
	seq := last + 1
	ev = ev.Valid() // stored and chained alike
	if ev.From == "" {
		ev.From = audit.FromContext(ctx)
	}
	if err := sealed.SealOrigin(ctx, d.sealer, seq, &ev); err != nil {
		return fmt.Errorf("seal the event's origin: %w", err)
	}
	var origin []byte // NULL when unknown
	if len(ev.Origin) > 0 {
		origin = ev.Origin
	}
	hash := audit.Chain(prev, seq, ev)
	_, err = tx.Exec(ctx, `INSERT INTO audit_events (seq, at, type, actor, subject, detail, prev_hash, hash, origin)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		seq, ev.At.UnixNano(), ev.Type, ev.Actor, ev.Subject, string(audit.DetailJSON(ev.Detail)), prev, hash, origin)
	if err != nil {
		return fmt.Errorf("append audit event: %w", err)
	}
	return nil
}

// appendChange adds a key change to the feed under the journal lock: the
// sequence number is the newest plus one, and the lock is held until the
// transaction commits, so a follower that has read seq n never later sees
// a smaller one appear. Listeners are told at commit.
func appendChange(ctx context.Context, tx pgx.Tx, id string, at time.Time) error {
	if err := lock(ctx, tx, lockJournal); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO api_key_changes (seq, key_id, at)
		SELECT COALESCE(MAX(seq), 0) + 1, $1, $2 FROM api_key_changes`, id, at.UnixNano()); err != nil {
		return fmt.Errorf("append key change: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, keyChannel); err != nil {
		return fmt.Errorf("announce key change: %w", err)
	}
	return nil
}

func cidrStrings(k *apikey.Key) []string {
	out := make([]string, len(k.CIDRs))
	for i, p := range k.CIDRs {
		out[i] = p.String()
	}
	return out
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// CreateKey implements apikey.Store.
func (d *DB) CreateKey(ctx context.Context, k *apikey.Key, hash []byte, ev audit.Event) error {
	return d.inTx(ctx, func(tx pgx.Tx) error {
		if id, ok := strings.CutPrefix(k.Owner, "user:"); ok {
			// FOR SHARE holds the person's row until the key is in: an
			// erasure that deletes it waits, then its sweep finds the key;
			// one that deleted it first has the key refused here.
			var one int
			err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR SHARE`, id).Scan(&one)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("%w: owner %s is not a known person", apikey.ErrBadRequest, k.Owner)
			}
			if err != nil {
				return fmt.Errorf("check the key's owner: %w", err)
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO api_keys (id, name, owner, env, scopes, rate_count, rate_period, rate_burst,
			quota_limit, quota_period, cidrs, created_at, expires_at, client) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
			k.ID, k.Name, k.Owner, string(k.Env), nonNilStrings(k.Scopes), k.Rate.Count, int64(k.Rate.Period), k.Rate.Burst,
			k.Quota.Limit, string(k.Quota.Period), cidrStrings(k), k.CreatedAt.UnixNano(), k.ExpiresAt.UnixNano(), k.Client)
		if err != nil {
			return fmt.Errorf("insert api key: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO api_key_secrets (key_id, hash, created_at) VALUES ($1, $2, $3)`,
			k.ID, hash, k.CreatedAt.UnixNano()); err != nil {
			return fmt.Errorf("insert api key secret: %w", err)
		}
		if err := appendChange(ctx, tx, k.ID, k.CreatedAt); err != nil {
			return err
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

func scanKey(r pgx.Row) (*apikey.Key, error) {
	var (
		k                        apikey.Key
		env, qp                  string
		cidrs                    []string
		ratePeriod, created, exp int64
		revoked, lastUsed, old   *int64
	)
	if err := r.Scan(&k.ID, &k.Name, &k.Owner, &env, &k.Scopes, &k.Rate.Count, &ratePeriod, &k.Rate.Burst,
		&k.Quota.Limit, &qp, &cidrs, &created, &exp, &revoked, &k.RevokeReason, &lastUsed, &k.Client, &old); err != nil {
		return nil, err
	}
	k.Env, k.Quota.Period, k.Rate.Period = apikey.Env(env), apikey.QuotaPeriod(qp), time.Duration(ratePeriod)
	k.CreatedAt, k.ExpiresAt = time.Unix(0, created).UTC(), time.Unix(0, exp).UTC()
	k.RevokedAt, k.LastUsedAt, k.OldSecretUntil = unixTime(revoked), unixTime(lastUsed), unixTime(old)
	if len(k.Scopes) == 0 {
		k.Scopes = []string{} // as SQLite's "[]" reads
	}
	for _, c := range cidrs {
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
	k, err := scanKey(d.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, apikey.ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("get api key: %w", err)
	}
	rows, err := d.pool.Query(ctx, `SELECT hash, created_at, not_after FROM api_key_secrets WHERE key_id = $1`, id)
	if err != nil {
		return nil, nil, fmt.Errorf("get api key secrets: %w", err)
	}
	defer rows.Close()
	var secrets []apikey.Secret
	for rows.Next() {
		var s apikey.Secret
		var created int64
		var notAfter *int64
		if err := rows.Scan(&s.Hash, &created, &notAfter); err != nil {
			return nil, nil, err
		}
		s.CreatedAt, s.NotAfter = time.Unix(0, created).UTC(), unixTime(notAfter)
		secrets = append(secrets, s)
	}
	return k, secrets, rows.Err()
}

// ListKeys implements apikey.Store. An empty owner lists every key.
func (d *DB) ListKeys(ctx context.Context, owner string) ([]*apikey.Key, error) {
	q := `SELECT ` + keyColumns + ` FROM api_keys`
	args := []any{}
	if owner != "" {
		q += ` WHERE owner = $1`
		args = append(args, owner)
	}
	rows, err := d.pool.Query(ctx, q+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	defer rows.Close()
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

// UpdateKey implements apikey.Store. The row is read FOR UPDATE, so the
// read, the change and the write are one step even with writers on other nodes.
func (d *DB) UpdateKey(ctx context.Context, id string, mutate func(*apikey.Key) (audit.Event, error)) error {
	return d.inTx(ctx, func(tx pgx.Tx) error {
		k, err := scanKey(tx.QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return apikey.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("read api key: %w", err)
		}
		ev, err := mutate(k)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE api_keys SET name = $1, scopes = $2, rate_count = $3, rate_period = $4,
			rate_burst = $5, quota_limit = $6, quota_period = $7, cidrs = $8, expires_at = $9 WHERE id = $10`,
			k.Name, nonNilStrings(k.Scopes), k.Rate.Count, int64(k.Rate.Period), k.Rate.Burst, k.Quota.Limit, string(k.Quota.Period),
			cidrStrings(k), k.ExpiresAt.UnixNano(), k.ID); err != nil {
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
	return d.inTx(ctx, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM api_keys WHERE id = $1 FOR UPDATE`, id).Scan(&one); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return apikey.ErrNotFound
			}
			return err
		}
		// Retire the current secret, and shorten (never lengthen) older overlaps.
		if _, err := tx.Exec(ctx, `UPDATE api_key_secrets SET not_after = $1
			WHERE key_id = $2 AND (not_after IS NULL OR not_after > $1)`, notAfter.UnixNano(), id); err != nil {
			return fmt.Errorf("retire secret: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM api_key_secrets WHERE key_id = $1 AND not_after IS NOT NULL AND not_after <= $2`,
			id, ev.At.UnixNano()); err != nil {
			return fmt.Errorf("drop dead secrets: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO api_key_secrets (key_id, hash, created_at) VALUES ($1, $2, $3)`,
			id, hash, ev.At.UnixNano()); err != nil {
			return fmt.Errorf("insert secret: %w", err)
		}
		if !expiresAt.IsZero() {
			if _, err := tx.Exec(ctx, `UPDATE api_keys SET expires_at = $1 WHERE id = $2`, expiresAt.UnixNano(), id); err != nil {
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
	return d.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1),
			revoke_reason = CASE WHEN revoked_at IS NULL THEN $2 ELSE revoke_reason END WHERE id = $3`, at.UnixNano(), reason, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return apikey.ErrNotFound
		}
		if err := appendChange(ctx, tx, id, at); err != nil {
			return err
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// DeleteKey implements apikey.Store.
func (d *DB) DeleteKey(ctx context.Context, id string, ev audit.Event) error {
	return d.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM api_keys WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return apikey.ErrNotFound
		}
		if _, err := tx.Exec(ctx, `DELETE FROM api_key_usage WHERE key_id = $1`, id); err != nil {
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
	rows, err := d.pool.Query(ctx, `SELECT seq, key_id FROM api_key_changes WHERE seq > $1 ORDER BY seq LIMIT 10000`, seq)
	if err != nil {
		return nil, seq, fmt.Errorf("read key changes: %w", err)
	}
	defer rows.Close()
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

func (d *DB) changesPrunedThrough(ctx context.Context) (int64, error) {
	var v string
	err := d.pool.QueryRow(ctx, `SELECT value FROM meta WHERE key = $1`, prunedThroughKey).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// LatestChange returns the newest change sequence number.
func (d *DB) LatestChange(ctx context.Context) (int64, error) {
	var seq int64
	err := d.pool.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM api_key_changes`).Scan(&seq)
	return seq, err
}

// PruneChanges drops change-feed entries older than before, keeping the
// newest, and records how far it pruned (see the SQLite store).
func (d *DB) PruneChanges(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := d.inTx(ctx, func(tx pgx.Tx) error {
		if err := lock(ctx, tx, lockJournal); err != nil {
			return err
		}
		var through *int64
		if err := tx.QueryRow(ctx, `SELECT MAX(seq) FROM api_key_changes
			WHERE at < $1 AND seq < (SELECT MAX(seq) FROM api_key_changes)`, before.UnixNano()).Scan(&through); err != nil {
			return err
		}
		if through == nil {
			return nil
		}
		if _, err := tx.Exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2)
			ON CONFLICT (key) DO UPDATE SET value = GREATEST(meta.value::bigint, excluded.value::bigint)::text`,
			prunedThroughKey, strconv.FormatInt(*through, 10)); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM api_key_changes WHERE seq <= $1`, *through)
		n = tag.RowsAffected()
		return err
	})
	return n, err
}

// AddUsage implements apikey.UsageStore.
func (d *DB) AddUsage(ctx context.Context, deltas []apikey.UsageDelta, lastUsed map[string]time.Time) error {
	return d.inTx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		// In a fixed order: two nodes flushing the same rows lock them in
		// the same order and cannot deadlock.
		deltas = slices.Clone(deltas)
		slices.SortFunc(deltas, func(a, b apikey.UsageDelta) int {
			return cmp.Or(cmp.Compare(a.KeyID, b.KeyID), a.Hour.Compare(b.Hour), cmp.Compare(a.Outcome, b.Outcome))
		})
		for _, u := range deltas {
			b.Queue(`INSERT INTO api_key_usage (key_id, hour, outcome, count) VALUES ($1, $2, $3, $4)
				ON CONFLICT (key_id, hour, outcome) DO UPDATE SET count = api_key_usage.count + excluded.count`,
				u.KeyID, u.Hour.UTC().Format(hourLayout), string(u.Outcome), u.Count)
		}
		ids := make([]string, 0, len(lastUsed))
		for id := range lastUsed {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			b.Queue(`UPDATE api_keys SET last_used_at = GREATEST(COALESCE(last_used_at, 0), $1) WHERE id = $2`,
				lastUsed[id].UnixNano(), id)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("add usage: %w", err)
		}
		return nil
	})
}

const hourLayout = "2006-01-02T15"

// UsageSince implements apikey.UsageStore.
func (d *DB) UsageSince(ctx context.Context, id string, since time.Time) ([]apikey.UsageRow, error) {
	rows, err := d.pool.Query(ctx, `SELECT hour, outcome, count FROM api_key_usage WHERE key_id = $1 AND hour >= $2 ORDER BY hour, outcome`,
		id, since.UTC().Format(hourLayout))
	if err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	defer rows.Close()
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
	err := d.pool.QueryRow(ctx, `SELECT COALESCE(SUM(count), 0)::bigint FROM api_key_usage WHERE key_id = $1 AND outcome = $2 AND hour >= $3`,
		id, string(outcome), since.UTC().Format(hourLayout)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count usage: %w", err)
	}
	return n, nil
}

// RecentAuditEvents implements audit.Reader.
func (d *DB) RecentAuditEvents(ctx context.Context, n int) ([]audit.Record, error) {
	var last int64
	if err := d.pool.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit_events`).Scan(&last); err != nil {
		return nil, err
	}
	recs, err := d.AuditEvents(ctx, max(0, last-int64(n)), n)
	if err != nil {
		return nil, err
	}
	slices.Reverse(recs)
	return recs, nil
}

// AuditEvents implements audit.Reader.
func (d *DB) AuditEvents(ctx context.Context, after int64, limit int) ([]audit.Record, error) {
	rows, err := d.pool.Query(ctx, `SELECT seq, at, type, actor, subject, detail, prev_hash, hash, origin
		FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit events: %w", err)
	}
	defer rows.Close()
	var out []audit.Record
	for rows.Next() {
		var r audit.Record
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
