package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

	"github.com/keywayhq/keyway/internal/app"
)

// cmdAudit runs `keyway audit verify`: it checks the hash chain of the
// audit trail and exits 1 if any event was edited, deleted or reordered.
func cmdAudit(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(stderr, "Usage: keyway audit verify [--data-dir DIR | --config FILE] [--store DSN] [-o text|json]")
		return exitUsage
	}
	fs := newFlags("audit verify", stderr)
	load := dataDirConfig(fs)
	out := outputFlag(fs)
	if err := fs.Parse(args[1:]); err != nil || !validOutput(*out, stderr) || fs.NArg() > 0 {
		return exitUsage
	}
	cfg, err := load(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	rep, err := app.VerifyAudit(context.Background(), cfg)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	if *out == "json" {
		res := map[string]any{"ok": rep.Broken == nil, "events": rep.Events, "head": hex.EncodeToString(rep.Head)}
		if rep.Broken != nil {
			res["broken_at"], res["reason"] = rep.Broken.Seq, rep.Broken.Reason
		}
		_ = json.NewEncoder(stdout).Encode(res)
	} else if rep.Broken == nil {
		fmt.Fprintf(stdout, "audit trail intact: %d events, head %x\n", rep.Events, rep.Head)
	} else {
		fmt.Fprintf(stdout, "%v\n(%d events verified before it)\n", rep.Broken, rep.Events)
	}
	if rep.Broken != nil {
		return exitError
	}
	return exitOK
}
