package postgres

import (
	"context"
	"log/slog"
	"time"
)

// Listen pushes news of key changes: it calls wake after every committed
// change to an API key, made by any node or CLI (appendChange notifies in
// the change's transaction, so the news comes at commit), and once after
// every (re)connection, since changes may have been made while it was
// away. It returns when ctx is done.
//
// The news carries nothing: wake makes the verifier read the change feed,
// which is durable, so a lost notification costs latency, never a missed
// revocation (the poll and the staleness bound cover it).
func (d *DB) Listen(ctx context.Context, wake func(), logger *slog.Logger) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := d.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		logger.Warn("postgres: the key change channel dropped; reconnecting", slog.String("error", err.Error()),
			slog.Duration("retry_in", backoff))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (d *DB) listenOnce(ctx context.Context, wake func()) error {
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// Taken out of the pool: a connection that listens is never handed to
	// another caller, and the pool's Close does not wait for it.
	pc := conn.Hijack()
	defer func() { _ = pc.Close(context.WithoutCancel(ctx)) }()
	if _, err := pc.Exec(ctx, "LISTEN "+keyChannel); err != nil {
		return err
	}
	wake()
	for {
		if _, err := pc.WaitForNotification(ctx); err != nil {
			return err
		}
		wake()
	}
}
