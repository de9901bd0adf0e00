package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/store"
)

const auditUsage = `Usage: keyway audit COMMAND [flags]

  verify [--public-key K]     check the trail's hash chain and signed checkpoints; exit 1,
                              naming the first bad event, if any was edited, deleted,
                              inserted, reordered or cut off, or the chain was rewritten
  public-key                  print the key that verifies checkpoints (base64), for
                              auditors who must not hold the signing key
  tail [-n N] [-f]            print the newest N events (default 10) as JSON lines;
                              -f follows new events until interrupted
  export [--since T]          print every event since T (RFC 3339, or a duration
                              such as 24h) as JSON lines, oldest first, for a SIEM

Every command takes --data-dir DIR (default ./keyway-data), --store DSN or --config FILE.
`

// cmdAudit runs `keyway audit …`.
func cmdAudit(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if wantsHelp(args) {
		fmt.Fprint(stderr, auditUsage)
		return exitUsage
	}
	sub := args[0]
	fs := newFlags("audit "+sub, stderr)
	load := dataDirConfig(fs)
	var (
		out    *string
		pubArg = fs.String("public-key", "", "verify: the audit public key (base64); default: derived from the signing key")
		n      = fs.Int("n", 10, "tail: how many of the newest events")
		follow = fs.Bool("f", false, "tail: follow new events")
		since  = fs.String("since", "", "export: the first time to include, RFC 3339 or a duration ago (24h)")
	)
	switch sub {
	case "verify":
		out = outputFlag(fs)
	case "public-key", "tail", "export":
	default:
		fmt.Fprintf(stderr, "keyway audit: unknown command %q\n\n%s", sub, auditUsage)
		return exitUsage
	}
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 || (out != nil && !validOutput(*out, stderr)) {
		return exitUsage
	}
	cfg, err := load(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch sub {
	case "verify":
		return auditVerify(ctx, cfg, getenv, *pubArg, *out, stdout, stderr)
	case "public-key":
		signer, err := app.AuditSigner(cfg, getenv, false)
		if err != nil {
			fmt.Fprintf(stderr, "keyway: %v\n", err)
			return exitError
		}
		fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(signer.PublicKey()))
		return exitOK
	}
	db, err := store.Open(ctx, cfg.Store, false)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	defer func() { _ = db.Close() }()
	if sub == "tail" {
		err = auditTail(ctx, db, *n, *follow, stdout)
	} else {
		err = auditExport(ctx, db, *since, stdout)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	return exitOK
}

func auditVerify(ctx context.Context, cfg *config.Config, getenv func(string) string, pubArg, out string, stdout, stderr io.Writer) int {
	var pub []byte
	if pubArg != "" {
		var err error
		if pub, err = app.ParseAuditPublicKey(pubArg); err != nil {
			fmt.Fprintf(stderr, "keyway: %v\n", err)
			return exitUsage
		}
	}
	rep, err := app.VerifyAudit(ctx, cfg, getenv, pub)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	if out == "json" {
		res := map[string]any{"ok": rep.Broken == nil, "events": rep.Events, "head": hex.EncodeToString(rep.Head),
			"checkpoints": rep.Checkpoints, "unsigned": rep.Unsigned}
		if c := rep.LastCheckpoint; c != nil {
			res["last_checkpoint"] = map[string]any{"seq": c.Seq, "at": c.At, "key_id": c.KeyID}
		}
		if rep.Broken != nil {
			res["broken_at"], res["reason"] = rep.Broken.Seq, rep.Broken.Reason
		}
		_ = json.NewEncoder(stdout).Encode(res)
	} else if rep.Broken == nil {
		fmt.Fprintf(stdout, "audit trail intact: %d events, head %x\n", rep.Events, rep.Head)
		if c := rep.LastCheckpoint; c != nil {
			fmt.Fprintf(stdout, "%d signed checkpoints match; the last covers event %d (%s, key %s); %d events since\n",
				rep.Checkpoints, c.Seq, c.At.Format(time.RFC3339), c.KeyID, rep.Unsigned)
		} else {
			fmt.Fprintln(stdout, "no signed checkpoint: a chain rewritten with fresh hashes would verify too")
		}
	} else {
		fmt.Fprintf(stdout, "%v\n(%d events verified before it)\n", rep.Broken, rep.Events)
	}
	if rep.Broken != nil {
		return exitError
	}
	return exitOK
}

// auditLine is one event as tail and export print it.
type auditLine struct {
	Seq     int64             `json:"seq"`
	At      time.Time         `json:"at"`
	Type    string            `json:"type"`
	Actor   string            `json:"actor"`
	Subject string            `json:"subject"`
	Detail  map[string]string `json:"detail,omitempty"`
	Hash    string            `json:"hash"`
}

func printEvents(enc *json.Encoder, recs []audit.Record) error {
	for _, r := range recs {
		e := r.Event
		if err := enc.Encode(auditLine{Seq: r.Seq, At: e.At, Type: e.Type, Actor: e.Actor, Subject: e.Subject,
			Detail: e.Detail, Hash: hex.EncodeToString(r.Hash)}); err != nil {
			return err
		}
	}
	return nil
}

// auditPage is how many events tail and export read at a time.
const auditPage = 500

func auditTail(ctx context.Context, db store.Store, n int, follow bool, stdout io.Writer) error {
	if n < 0 {
		return errors.New("-n must not be negative")
	}
	enc := json.NewEncoder(stdout)
	last, _, err := db.AuditHead(ctx)
	if err != nil {
		return err
	}
	after := max(0, last-int64(n))
	for {
		recs, err := db.AuditEvents(ctx, after, auditPage)
		if err != nil {
			return err
		}
		if err := printEvents(enc, recs); err != nil {
			return err
		}
		if len(recs) > 0 {
			after = recs[len(recs)-1].Seq
		}
		if len(recs) == auditPage {
			continue
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func auditExport(ctx context.Context, db store.Store, since string, stdout io.Writer) error {
	var from time.Time
	if since != "" {
		if d, err := time.ParseDuration(since); err == nil && d > 0 {
			from = time.Now().Add(-d)
		} else if from, err = time.Parse(time.RFC3339, since); err != nil {
			return fmt.Errorf("--since %q: want an RFC 3339 time (2026-01-02T15:04:05Z) or a duration (24h)", since)
		}
	}
	enc := json.NewEncoder(stdout)
	for after := int64(0); ; {
		recs, err := db.AuditEvents(ctx, after, auditPage)
		if err != nil {
			return err
		}
		keep := recs[:0:0]
		for _, r := range recs {
			if !r.Event.At.Before(from) {
				keep = append(keep, r)
			}
		}
		if err := printEvents(enc, keep); err != nil {
			return err
		}
		if len(recs) < auditPage {
			return nil
		}
		after = recs[len(recs)-1].Seq
	}
}
