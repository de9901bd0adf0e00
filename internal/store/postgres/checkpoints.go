package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keywayhq/keyway/internal/audit"
)

var _ audit.CheckpointStore = (*DB)(nil)

// AppendAudit implements audit.Appender.
func (d *DB) AppendAudit(ctx context.Context, ev audit.Event) error {
	return d.inTx(ctx, func(tx pgx.Tx) error { return d.appendAudit(ctx, tx, ev) })
}

// AuditHead implements audit.CheckpointStore.
func (d *DB) AuditHead(ctx context.Context) (int64, []byte, error) {
	var seq int64
	var head []byte
	err := d.pool.QueryRow(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &head)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, nil
	}
	return seq, head, err
}

// AddAuditCheckpoint implements audit.CheckpointStore.
func (d *DB) AddAuditCheckpoint(ctx context.Context, c audit.Checkpoint) error {
	_, err := d.pool.Exec(ctx, `INSERT INTO audit_checkpoints (seq, at, head, key_id, signature) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (seq) DO NOTHING`, c.Seq, c.At.UnixNano(), c.Head, c.KeyID, c.Signature)
	if err != nil {
		return fmt.Errorf("add audit checkpoint: %w", err)
	}
	return nil
}

// AuditCheckpoints implements audit.CheckpointStore.
func (d *DB) AuditCheckpoints(ctx context.Context, after int64, limit int) ([]audit.Checkpoint, error) {
	rows, err := d.pool.Query(ctx, `SELECT seq, at, head, key_id, signature FROM audit_checkpoints
		WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit checkpoints: %w", err)
	}
	defer rows.Close()
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
