package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/duration"
	"github.com/keywayhq/keyway/internal/httpapi"
)

const keysUsage = `Usage: keyway keys COMMAND [flags]

  create  --name N [--owner service:NAME|user:ID] [--scope S]... [--env live|test]
          [--rate 5/s] [--burst N] [--quota 1000/day|50000/month|100/total]
          [--cidr 10.0.0.0/8]... [--expires 90d] [--client PROFILE]
  list    [--owner O]
  show    ID
  update  ID [--name N] [--scope S]... [--rate R] [--burst N] [--quota Q] [--cidr C]... [--expires-at RFC3339]
  rotate  ID [--overlap 24h] [--expires 90d]   the old secret keeps working for --overlap
          (default 24h; 0 ends it now, for a leaked secret); --expires sets a new lifetime
  revoke  ID [--reason TEXT]
  delete  ID
  usage   ID [--window 24h]

Durations take s, m, h and d (a day is 24h): 90s, 15m, 12h, 8d, 1d12h.
Every command takes --data-dir DIR (default ./keyway-data), --store DSN or --config FILE,
and -o text|json. They work whether or not keyway serve runs on the same data
directory; a running server sees each change within a second.
`

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// parseInterspersed parses flags that may come before or after positional
// arguments ("keys show ID -o json") and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

type keysCmd struct {
	stdout, stderr io.Writer
	out            *string
}

func cmdKeys(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if wantsHelp(args) {
		fmt.Fprint(stderr, keysUsage)
		return exitUsage
	}
	sub := args[0]
	fs := newFlags("keys "+sub, stderr)
	load := dataDirConfig(fs)
	kc := &keysCmd{stdout: stdout, stderr: stderr, out: outputFlag(fs)}

	var run func(ctx context.Context, k *app.Keys, pos []string) error
	wantArgs := 1
	switch sub {
	case "create":
		run, wantArgs = kc.create(fs), 0
	case "list":
		run, wantArgs = kc.list(fs), 0
	case "show":
		run = kc.show
	case "update":
		run = kc.update(fs)
	case "rotate":
		run = kc.rotate(fs)
	case "revoke":
		run = kc.revoke(fs)
	case "delete":
		run = kc.del
	case "usage":
		run = kc.usage(fs)
	default:
		fmt.Fprintf(stderr, "keyway keys: unknown command %q\n\n%s", sub, keysUsage)
		return exitUsage
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil || !validOutput(*kc.out, stderr) {
		return exitUsage
	}
	if len(pos) != wantArgs {
		fmt.Fprintf(stderr, "keyway keys %s: want %d argument(s), got %d\n", sub, wantArgs, len(pos))
		return exitUsage
	}
	cfg, err := load(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	ctx := context.Background()
	logger := app.NewLogger(stderr, "text", "warn")
	k, err := app.OpenKeys(ctx, cfg, logger, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	defer func() {
		if err := k.Close(); err != nil {
			logger.Error("close store", slog.String("error", err.Error()))
		}
	}()
	if err := run(ctx, k, pos); err != nil {
		fmt.Fprintf(stderr, "keyway keys %s: %v\n", sub, userError(err))
		return exitError
	}
	return exitOK
}

// userError words the errors a person can act on.
func userError(err error) error {
	switch {
	case errors.Is(err, apikey.ErrNotFound):
		return errors.New("no such key")
	case errors.Is(err, apikey.ErrRevoked):
		return errors.New("the key is revoked")
	}
	return err
}

func (c *keysCmd) json(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *keysCmd) printKey(k *apikey.Key) error {
	j := httpapi.NewKeyJSON(k, time.Now())
	if *c.out == "json" {
		return c.json(j)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("id", j.ID)
	row("name", j.Name)
	row("owner", j.Owner)
	row("env", j.Env)
	row("status", j.Status)
	row("scopes", strings.Join(j.Scopes, " "))
	if j.Client != "" {
		row("client", j.Client)
	}
	if j.Rate != nil {
		row("rate", j.Rate.Rate+" burst "+strconv.FormatInt(j.Rate.Burst, 10))
	}
	if j.Quota != nil {
		row("quota", strconv.FormatInt(j.Quota.Limit, 10)+"/"+j.Quota.Period)
	}
	if len(j.CIDRs) > 0 {
		row("cidrs", strings.Join(j.CIDRs, " "))
	}
	row("created", j.CreatedAt.Format(time.RFC3339))
	row("expires", j.ExpiresAt.Format(time.RFC3339))
	if j.OldSecretExpiresAt != nil {
		row("old secret until", j.OldSecretExpiresAt.Format(time.RFC3339))
	}
	if j.LastUsedAt != nil {
		row("last used", j.LastUsedAt.Format(time.RFC3339))
	}
	if j.RevokedAt != nil {
		row("revoked", j.RevokedAt.Format(time.RFC3339)+" "+j.RevokeReason)
	}
	return tw.Flush()
}

// printSecret shows a new secret: the only time it is ever shown.
func (c *keysCmd) printSecret(k *apikey.Key, raw string) error {
	if *c.out == "json" {
		return c.json(map[string]string{"id": apikey.DisplayID(k.ID), "key": raw})
	}
	fmt.Fprintf(c.stdout, "%s\n", raw)
	fmt.Fprintf(c.stderr, "This is %s's secret. It is shown once and cannot be recovered: store it now.\n", apikey.DisplayID(k.ID))
	return nil
}

// limitFlags are the flags create and update share.
type limitFlags struct {
	name, rate, quota string
	burst             int64
	scopes, cidrs     stringList
}

func (l *limitFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.name, "name", "", "a name for people")
	fs.Var(&l.scopes, "scope", "a scope (repeat for more)")
	fs.StringVar(&l.rate, "rate", "", "rate limit, like 5/s or 100/min")
	fs.Int64Var(&l.burst, "burst", 0, "burst of the rate limit (default: the count)")
	fs.StringVar(&l.quota, "quota", "", "quota: N/day, N/month or N/total")
	fs.Var(&l.cidrs, "cidr", "a network the key may be used from (repeat for more)")
}

func parseQuota(s string) (apikey.Quota, error) {
	n, period, ok := strings.Cut(s, "/")
	limit, err := strconv.ParseInt(n, 10, 64)
	if !ok || err != nil {
		return apikey.Quota{}, fmt.Errorf("--quota must look like 1000/day, 50000/month or 100/total")
	}
	return apikey.Quota{Limit: limit, Period: apikey.QuotaPeriod(period)}, nil
}

func (c *keysCmd) create(fs *flag.FlagSet) func(context.Context, *app.Keys, []string) error {
	var lf limitFlags
	lf.register(fs)
	owner := fs.String("owner", "service:default", `owner: "service:NAME" or "user:ID"`)
	env := fs.String("env", "live", "live or test")
	expires := duration.Flag(fs, "expires", 0, "lifetime, like 30d or 720h (default: api_keys.default_ttl)")
	client := fs.String("client", "", "the client profile (config clients:) the key is for")
	return func(ctx context.Context, k *app.Keys, _ []string) error {
		req := apikey.CreateParams{Name: lf.name, Owner: *owner, Env: apikey.Env(*env), Scopes: lf.scopes, TTL: *expires, Client: *client}
		var err error
		if req.Rate, err = httpapi.ParseRate(&httpapi.RateJSON{Rate: lf.rate, Burst: lf.burst}); err != nil {
			return err
		}
		if lf.quota != "" {
			if req.Quota, err = parseQuota(lf.quota); err != nil {
				return err
			}
		}
		if req.CIDRs, err = httpapi.ParseCIDRs(lf.cidrs); err != nil {
			return err
		}
		raw, key, err := k.Create(ctx, req, "cli")
		if err != nil {
			return err
		}
		return c.printSecret(key, raw)
	}
}

func (c *keysCmd) list(fs *flag.FlagSet) func(context.Context, *app.Keys, []string) error {
	owner := fs.String("owner", "", "only this owner's keys")
	return func(ctx context.Context, k *app.Keys, _ []string) error {
		keys, err := k.List(ctx, *owner)
		if err != nil {
			return err
		}
		out := httpapi.NewKeysJSON(keys, time.Now())
		if *c.out == "json" {
			return c.json(map[string]any{"keys": out})
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tOWNER\tENV\tSTATUS\tSCOPES\tEXPIRES")
		for _, j := range out {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Name, j.Owner, j.Env, j.Status,
				strings.Join(j.Scopes, " "), j.ExpiresAt.Format(time.DateOnly))
		}
		return tw.Flush()
	}
}

func (c *keysCmd) show(ctx context.Context, k *app.Keys, pos []string) error {
	key, err := k.Get(ctx, pos[0])
	if err != nil {
		return err
	}
	return c.printKey(key)
}

func (c *keysCmd) update(fs *flag.FlagSet) func(context.Context, *app.Keys, []string) error {
	var lf limitFlags
	lf.register(fs)
	expiresAt := fs.String("expires-at", "", "bring expiry forward to this time (RFC 3339)")
	return func(ctx context.Context, k *app.Keys, pos []string) error {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		var p apikey.UpdateParams
		if set["name"] {
			p.Name = &lf.name
		}
		if set["scope"] {
			s := []string(lf.scopes)
			p.Scopes = &s
		}
		if set["rate"] || set["burst"] {
			r, err := httpapi.ParseRate(&httpapi.RateJSON{Rate: lf.rate, Burst: lf.burst})
			if err != nil {
				return err
			}
			p.Rate = &r
		}
		if set["quota"] {
			q := apikey.Quota{}
			if lf.quota != "none" {
				var err error
				if q, err = parseQuota(lf.quota); err != nil {
					return err
				}
			}
			p.Quota = &q
		}
		if set["cidr"] {
			cs, err := httpapi.ParseCIDRs(lf.cidrs)
			if err != nil {
				return err
			}
			p.CIDRs = &cs
		}
		if set["expires-at"] {
			t, err := time.Parse(time.RFC3339, *expiresAt)
			if err != nil {
				return fmt.Errorf("--expires-at must be RFC 3339, like 2027-01-31T00:00:00Z")
			}
			p.ExpiresAt = &t
		}
		key, err := k.Update(ctx, pos[0], p, "cli")
		if err != nil {
			return err
		}
		return c.printKey(key)
	}
}

func (c *keysCmd) rotate(fs *flag.FlagSet) func(context.Context, *app.Keys, []string) error {
	overlap := duration.Flag(fs, "overlap", apikey.DefaultOverlap, "how long the old secret keeps working, like 24h or 7d; 0 ends it now (for a leaked secret)")
	expires := duration.Flag(fs, "expires", 0, "a new lifetime from now, like 90d (within api_keys.max_ttl; default: the key keeps its expiry)")
	return func(ctx context.Context, k *app.Keys, pos []string) error {
		p := apikey.RotateParams{Overlap: overlap, TTL: *expires}
		raw, err := k.Rotate(ctx, pos[0], p, "cli")
		if err != nil {
			return err
		}
		key, err := k.Get(ctx, pos[0])
		if err != nil {
			return err
		}
		if err := c.printSecret(key, raw); err != nil {
			return err
		}
		if *c.out == "text" {
			if key.OldSecretUntil.IsZero() {
				fmt.Fprintf(c.stderr, "The old secret stopped working now.\n")
			} else {
				fmt.Fprintf(c.stderr, "The old secret keeps working until %s (--overlap 0 ends it at once).\n", key.OldSecretUntil.Format(time.RFC3339))
			}
			fmt.Fprintf(c.stderr, "The key expires at %s.\n", key.ExpiresAt.Format(time.RFC3339))
		}
		return nil
	}
}

func (c *keysCmd) revoke(fs *flag.FlagSet) func(context.Context, *app.Keys, []string) error {
	reason := fs.String("reason", "", "why, for the audit trail")
	return func(ctx context.Context, k *app.Keys, pos []string) error {
		if err := k.Revoke(ctx, pos[0], *reason, "cli"); err != nil {
			return err
		}
		key, err := k.Get(ctx, pos[0])
		if err != nil {
			return err
		}
		return c.printKey(key)
	}
}

func (c *keysCmd) del(ctx context.Context, k *app.Keys, pos []string) error {
	if err := k.Delete(ctx, pos[0], "cli"); err != nil {
		return err
	}
	if *c.out == "json" {
		return c.json(map[string]any{"deleted": pos[0]})
	}
	fmt.Fprintf(c.stdout, "deleted %s\n", pos[0])
	return nil
}

func (c *keysCmd) usage(fs *flag.FlagSet) func(context.Context, *app.Keys, []string) error {
	window := duration.Flag(fs, "window", 24*time.Hour, "how far back, like 24h or 7d")
	return func(ctx context.Context, k *app.Keys, pos []string) error {
		key, err := k.Get(ctx, pos[0])
		if err != nil {
			return err
		}
		since := time.Now().Add(-*window).UTC().Truncate(time.Hour)
		rows, err := k.UsageSince(ctx, key.ID, since)
		if err != nil {
			return err
		}
		out := httpapi.NewUsageJSON(key.ID, since, rows)
		if *c.out == "json" {
			return c.json(out)
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "HOUR\tOUTCOME\tCOUNT")
		for _, b := range out.Buckets {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", b.Hour.Format("2006-01-02 15:00"), b.Outcome, b.Count)
		}
		return tw.Flush()
	}
}
