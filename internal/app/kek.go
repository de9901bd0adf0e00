package app

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/crypt"
)

// KEKStatus is the KEK ring and what it wraps.
type KEKStatus struct {
	// Ring are the IDs of the ring's KEKs, the current one first.
	Ring []string `json:"ring"`
	// DataKeys counts the data keys by the KEK that wraps them.
	DataKeys map[string]int `json:"data_keys"`
}

// KEKRing returns the status of cfg's KEK ring.
func KEKRing(ctx context.Context, cfg *config.Config, getenv func(string) string) (*KEKStatus, error) {
	db, err := OpenStore(ctx, cfg, getenv)
	if err != nil {
		return nil, err
	}
	defer func() { _ = db.Close() }()
	return kekStatus(ctx, db.Sealer())
}

func kekStatus(ctx context.Context, s *crypt.Sealer) (*KEKStatus, error) {
	counts, err := s.KeyCounts(ctx)
	if err != nil {
		return nil, err
	}
	return &KEKStatus{Ring: s.Ring().IDs(), DataKeys: counts}, nil
}

// RotateKEK makes a new KEK the current one and rewraps every data key
// under it, while servers run: with a KEK file, a new key is put first in
// it (the old ones stay after it); from KEYWAY_KEK or a command, the
// operator has put the new key first there. Running nodes learn of the new
// KEK by themselves (on a data key they cannot open, and every 30
// seconds). With rewrapOnly, no new key is made: the data keys still under
// an older KEK (wrapped by a node before it learnt of the new one) move to
// the current one. The rotation is audited.
func RotateKEK(ctx context.Context, cfg *config.Config, getenv func(string) string, rewrapOnly bool) (*crypt.RotateReport, *KEKStatus, error) {
	db, err := OpenStore(ctx, cfg, getenv)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = db.Close() }()
	src := kekSource(cfg)
	if src.Origin(getenv) == "file" && !rewrapOnly {
		if _, err := src.Prepend(getenv); err != nil {
			return nil, nil, err
		}
		if err := db.Sealer().Ring().Reload(); err != nil {
			return nil, nil, err
		}
	}
	// Nodes that start from now on must hold the new KEK.
	if _, err := db.KEKMark(ctx, db.Sealer().Ring().Current().ID, true); err != nil {
		return nil, nil, err
	}
	rep, err := db.Sealer().Rotate(ctx)
	if err != nil {
		return rep, nil, err
	}
	ev := audit.Event{At: time.Now(), Type: audit.KEKRotated, Actor: "cli", Subject: "kek:" + rep.KEK,
		Detail: map[string]string{"rewrapped": strconv.Itoa(rep.Rewrapped), "already_current": strconv.Itoa(rep.Current)}}
	if err := db.AppendAudit(ctx, ev); err != nil {
		return rep, nil, fmt.Errorf("audit the rotation: %w", err)
	}
	st, err := kekStatus(ctx, db.Sealer())
	return rep, st, err
}

// reloadKEKRing reads the KEK ring again every 30 seconds while ctx lasts,
// so that a node wraps new data keys under a KEK rotated in elsewhere.
func (a *App) reloadKEKRing(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.db.Sealer().Ring().Reload(); err != nil {
				a.logger.Warn("read the KEK ring", slog.String("error", err.Error()))
			}
		}
	}
}
