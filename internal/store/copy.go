package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/store/postgres"
	"github.com/keywayhq/keyway/internal/store/sqlite"
)

// CopyReport says what Copy moved.
type CopyReport struct {
	Rows        map[string]int64 // by table
	AuditEvents int64            // verified on the target after the copy
}

// column converts one SQLite value to its PostgreSQL column's type.
type column struct {
	name string
	conv func(any) (any, error)
	// nullToo runs conv on NULL as well.
	nullToo bool
}

func plain(name string) column { return column{name: name} }

// jsonList reads a JSON array of strings (SQLite) into a TEXT[] value.
func jsonList(name string) column {
	return column{name: name, conv: func(v any) (any, error) {
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case []byte:
			s = string(x)
		default:
			return nil, fmt.Errorf("%s: want JSON text, got %T", name, v)
		}
		out := []string{}
		if err := json.Unmarshal([]byte(s), &out); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return out, nil
	}}
}

// blob reads a NOT NULL BLOB: SQLite's driver gives an empty one as nil,
// which PostgreSQL would take for NULL.
func blob(name string) column {
	return column{name: name, nullToo: true, conv: func(v any) (any, error) {
		switch x := v.(type) {
		case nil:
			return []byte{}, nil
		case []byte:
			if x == nil {
				return []byte{}, nil
			}
			return x, nil
		default:
			return nil, fmt.Errorf("%s: want bytes, got %T", name, v)
		}
	}}
}

// boolean reads SQLite's 0/1 into a BOOLEAN.
func boolean(name string) column {
	return column{name: name, conv: func(v any) (any, error) {
		n, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("%s: want an integer, got %T", name, v)
		}
		return n != 0, nil
	}}
}

func smallint(name string) column {
	return column{name: name, conv: func(v any) (any, error) {
		n, ok := v.(int64)
		if !ok || n < -32768 || n > 32767 {
			return nil, fmt.Errorf("%s: want a small integer, got %v", name, v)
		}
		return int16(n), nil
	}}
}

// copyTables are the tables Copy moves, parents before children. Ceremony
// challenges live five minutes and are left behind: a ceremony begun
// during the move starts again.
var copyTables = []struct {
	name string
	cols []column
}{
	{"users", []column{plain("id"), blob("handle"), plain("username"), plain("display_name"), plain("role"), plain("created_at"), plain("disabled_at"), jsonList("roles"),
		plain("username_sealed"), plain("display_name_sealed")}},
	{"credentials", []column{plain("id"), plain("user_id"), plain("name"), blob("public_key"), plain("attestation_type"), plain("attestation_format"),
		blob("aaguid"), plain("sign_count"), boolean("clone_warning"), smallint("flags"), jsonList("transports"), plain("attachment"), plain("created_at"), plain("last_used_at"),
		plain("name_sealed")}},
	{"recovery_codes", []column{plain("hash"), plain("user_id"), plain("used_at")}},
	{"invites", []column{plain("hash"), plain("kind"), plain("user_id"), plain("role"), plain("created_by"), plain("created_at"), plain("expires_at"), plain("used_at")}},
	{"sessions", []column{plain("id"), plain("token_hash"), plain("user_id"), plain("credential_id"), boolean("restricted"), plain("created_at"),
		plain("last_seen_at"), plain("expires_at"), plain("step_up_at"), plain("ip"), plain("user_agent"), plain("device_sealed")}},
	{"user_sources", []column{plain("user_id"), plain("source_hash"), plain("last_seen_at")}},
	{"api_keys", []column{plain("id"), plain("name"), plain("owner"), plain("env"), jsonList("scopes"), plain("rate_count"), plain("rate_period"),
		plain("rate_burst"), plain("quota_limit"), plain("quota_period"), jsonList("cidrs"), plain("created_at"), plain("expires_at"),
		plain("revoked_at"), plain("revoke_reason"), plain("last_used_at"), plain("client")}},
	{"api_key_secrets", []column{plain("key_id"), plain("hash"), plain("created_at"), plain("not_after")}},
	{"api_key_changes", []column{plain("seq"), plain("key_id"), plain("at")}},
	{"api_key_usage", []column{plain("key_id"), plain("hour"), plain("outcome"), plain("count")}},
	{"audit_events", []column{plain("seq"), plain("at"), plain("type"), plain("actor"), plain("subject"), plain("detail"), blob("prev_hash"), blob("hash"), plain("origin")}},
	{"audit_checkpoints", []column{plain("seq"), plain("at"), blob("head"), plain("key_id"), blob("signature")}},
}

// Copy moves everything a SQLite store holds, and the data keys of its key
// store (keys, when not nil), into an empty PostgreSQL store, in one
// PostgreSQL transaction: the target ends with all of it or none of it.
// Sealed fields move as they are: they stay bound to their table, column
// and row, which keep their names. The audit trail keeps its sequence
// numbers and hashes, and is verified on the target before Copy returns.
// Stop the server that uses the SQLite file first: what it writes during
// the copy is not moved.
func Copy(ctx context.Context, from *sqlite.DB, keys *sqlite.Keys, to *postgres.DB) (*CopyReport, error) {
	rep := &CopyReport{Rows: map[string]int64{}}
	src, err := from.SQL().BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("read the SQLite store: %w", err)
	}
	defer func() { _ = src.Rollback() }()
	err = pgx.BeginFunc(ctx, to.Pool(), func(tx pgx.Tx) error {
		for _, t := range []string{"users", "api_keys", "audit_events", "invites"} {
			var n int64
			if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM "+t).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return fmt.Errorf("the PostgreSQL store is not empty (%s has %d rows): copy only into a new database", t, n)
			}
		}
		for _, t := range copyTables {
			n, err := copyTable(ctx, src, tx, t.name, t.cols)
			if err != nil {
				return fmt.Errorf("copy %s: %w", t.name, err)
			}
			rep.Rows[t.name] = n
		}
		if keys != nil {
			ksrc, err := keys.SQL().BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
			if err != nil {
				return fmt.Errorf("read the key store: %w", err)
			}
			defer func() { _ = ksrc.Rollback() }()
			n, err := copyTable(ctx, ksrc, tx, "data_keys", []column{plain("user_id"), plain("kek_id"), blob("wrapped"), plain("created_at")})
			if err != nil {
				return fmt.Errorf("copy data_keys: %w", err)
			}
			rep.Rows["data_keys"] = n
		}
		rows, err := src.QueryContext(ctx, `SELECT key, value FROM meta WHERE key <> 'created_at'`)
		if err != nil {
			return fmt.Errorf("copy meta: %w", err)
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, k, v); err != nil {
				return fmt.Errorf("copy meta: %w", err)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	trail, err := audit.VerifyTrail(ctx, to, audit.VerifyOptions{})
	if err != nil {
		return nil, fmt.Errorf("verify the copied audit trail: %w", err)
	}
	if trail.Broken != nil {
		return nil, fmt.Errorf("the copied audit trail does not verify: %w", trail.Broken)
	}
	rep.AuditEvents = trail.Events
	return rep, nil
}

func copyTable(ctx context.Context, src *sql.Tx, dst pgx.Tx, table string, cols []column) (int64, error) {
	names := make([]string, len(cols))
	list := ""
	for i, c := range cols {
		names[i] = c.name
		if i > 0 {
			list += ", "
		}
		list += c.name
	}
	rows, err := src.QueryContext(ctx, "SELECT "+list+" FROM "+table) //nolint:gosec // G202: names from copyTables, not input
	if err != nil {
		return 0, err
	}
	defer func() { _ = rows.Close() }()
	var batch [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return 0, err
		}
		for i, c := range cols {
			if c.conv != nil && (vals[i] != nil || c.nullToo) {
				if vals[i], err = c.conv(vals[i]); err != nil {
					return 0, err
				}
			}
		}
		batch = append(batch, vals)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	return dst.CopyFrom(ctx, pgx.Identifier{table}, names, pgx.CopyFromRows(batch))
}
