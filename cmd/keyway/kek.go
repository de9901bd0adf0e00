package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/keywayhq/keyway/internal/app"
)

const kekUsage = `Usage: keyway kek COMMAND [flags]

  status   the KEK ring (current first) and how many data keys each KEK wraps
  rotate   make a new KEK the current one and rewrap every data key under it,
           while servers run. With a KEK file, a new key is put first in the
           file; with KEYWAY_KEK or data_protection.kek_command, put the new
           key first there, then rotate. Running nodes follow by themselves.
           Remove an old key from the ring once status shows it wraps nothing
           (and every node has the new ring).
  rotate --rewrap   make no new key: move the data keys still under an older
           KEK (wrapped by a node before it learnt of the new one) to the
           current one

Every command takes --data-dir DIR (default ./keyway-data), --store DSN or
--config FILE, and -o text|json.
`

// cmdKEK runs `keyway kek …`.
func cmdKEK(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if wantsHelp(args) {
		fmt.Fprint(stderr, kekUsage)
		return exitUsage
	}
	sub := args[0]
	if sub != "rotate" && sub != "status" {
		fmt.Fprintf(stderr, "keyway kek: unknown command %q\n\n%s", sub, kekUsage)
		return exitUsage
	}
	fs := newFlags("kek "+sub, stderr)
	load := dataDirConfig(fs)
	out := outputFlag(fs)
	rewrap := fs.Bool("rewrap", false, "rotate: make no new key, only rewrap to the current one")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 || !validOutput(*out, stderr) {
		return exitUsage
	}
	cfg, err := load(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	ctx := context.Background()
	var st *app.KEKStatus
	var res map[string]any
	if sub == "rotate" {
		rep, s, err := app.RotateKEK(ctx, cfg, getenv, *rewrap)
		if err != nil {
			fmt.Fprintf(stderr, "keyway: %v\n", err)
			return exitError
		}
		st = s
		res = map[string]any{"kek": rep.KEK, "rewrapped": rep.Rewrapped, "already_current": rep.Current}
		if *out != "json" {
			fmt.Fprintf(stdout, "rewrapped %d data keys under KEK %s (%d were under it already)\n", rep.Rewrapped, rep.KEK, rep.Current)
		}
	} else if st, err = app.KEKRing(ctx, cfg, getenv); err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	if *out == "json" {
		if res == nil {
			res = map[string]any{}
		}
		res["ring"], res["data_keys"] = st.Ring, st.DataKeys
		_ = json.NewEncoder(stdout).Encode(res)
		return exitOK
	}
	for i, id := range st.Ring {
		role := "older"
		if i == 0 {
			role = "current"
		}
		fmt.Fprintf(stdout, "%s  %-7s  wraps %d data keys\n", id, role, st.DataKeys[id])
	}
	var unknown []string
	for id, n := range st.DataKeys {
		if !slices.Contains(st.Ring, id) {
			unknown = append(unknown, fmt.Sprintf("%s (%d)", id, n))
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		fmt.Fprintf(stdout, "under KEKs not in the ring: %s: restore them to the ring\n", strings.Join(unknown, ", "))
		return exitError
	}
	return exitOK
}
