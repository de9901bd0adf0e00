package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keywayhq/keyway/internal/audit"
)

var _ audit.CheckpointStore = (*DB)(nil)

// AppendAudit implements audit.Appender.
func (d *DB) AppendAudit(ctx context.Context, ev audit.Event) error {
	return d.inTx(ctx, func(tx *sql.Tx) error { return d.appendAudit(ctx, tx, ev) })
}

// AuditHead implements audit.CheckpointStore.
func (d *DB) AuditHead(ctx context.Context) (int64, []byte, error) {
	var seq int64
	var head []byte
	err := d.sql.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &head)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, nil
	}
	return seq, head, err
}

// AddAuditCheckpoint implements audit.CheckpointStore.
func (d *DB) AddAuditCheckpoint(ctx context.Context, c audit.Checkpoint) error {
	_, err := d.sql.ExecContext(ctx, `INSERT INTO audit_checkpoints (seq, at, head, key_id, signature) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (seq) DO NOTHING`, c.Seq, c.At.UnixNano(), c.Head, c.KeyID, c.Signature)
	if err != nil {
		return fmt.Errorf("add audit checkpoint: %w", err)
	}
	return nil
}

// AuditCheckpoints implements audit.CheckpointStore.
func (d *DB) AuditCheckpoints(ctx context.Context, after int64, limit int) ([]audit.Checkpoint, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT seq, at, head, key_id, signature FROM audit_checkpoints
		WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit checkpoints: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []audit.Checkpoint
	for rows.Next() {
		var c audit.Checkpoint
		var at int64
		if err := rows.Scan(&c.Seq, &at, &c.Head, &c.KeyID, &c.Signature); err != nil {
			return nil, err
		}
		c.At = time.Unix(0, at).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}
