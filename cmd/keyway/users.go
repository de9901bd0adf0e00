package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/passkey"
)

const usersUsage = `Usage: keyway users COMMAND [flags]

  list                          people and their roles
  invite [--role user|admin]    a one-time sign-up link (7 days)
  enrol-link USERNAME           a one-time link that lets USERNAME register a new passkey (24 h)
  revoke-sessions USERNAME      end every session of USERNAME at once
  roles USERNAME [--set R1,R2]  show USERNAME's roles, or replace them (--set "" removes all);
                                session routes with roles: let in only people holding one
  export USER                   everything keyway holds about USER (username or usr_ ID), as JSON
  erase USER --yes              erase USER: account, passkeys, sessions, API keys, and the data key
                                that opens their personal data in every copy and backup of the
                                database; the audit trail keeps pseudonymous events only

Every command takes --data-dir DIR (default ./keyway-data), --store DSN or --config FILE,
and -o text|json. Links are printed, never logged; hand them over in person
or over a channel you trust. Every action is in the audit trail (actor "cli").
`

// cmdUsers runs `keyway users …`: the operator's way in when no admin can
// sign in (an admin who lost every passkey and code, a setup link expired).
func cmdUsers(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if wantsHelp(args) {
		fmt.Fprint(stderr, usersUsage)
		return exitUsage
	}
	sub := args[0]
	fs := newFlags("users "+sub, stderr)
	load := dataDirConfig(fs)
	out := outputFlag(fs)
	role := fs.String("role", "user", "role of the invited person: user or admin")
	setRoles := fs.String("set", "", "roles: the new roles, comma-separated (\"\" removes all)")
	yes := fs.Bool("yes", false, "erase: yes, erase this person for ever")
	want := map[string]int{"list": 0, "invite": 0, "enrol-link": 1, "revoke-sessions": 1, "roles": 1, "export": 1, "erase": 1}
	n, ok := want[sub]
	if !ok {
		fmt.Fprintf(stderr, "keyway users: unknown command %q\n\n%s", sub, usersUsage)
		return exitUsage
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil || !validOutput(*out, stderr) {
		return exitUsage
	}
	if len(pos) != n || (*role != "user" && *role != "admin") {
		fmt.Fprintf(stderr, "keyway users %s: want %d argument(s) and --role user or admin\n", sub, n)
		return exitUsage
	}
	cfg, err := load(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	ctx := context.Background()
	logger := app.NewLogger(stderr, "text", "warn")
	people, err := app.OpenPeople(ctx, cfg, logger, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	defer func() {
		if err := people.Close(); err != nil {
			logger.Error("close store", slog.String("error", err.Error()))
		}
	}()
	show := func(v any, text string) int {
		if *out == "json" {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(v)
		} else {
			fmt.Fprintln(stdout, text)
		}
		return exitOK
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "keyway users %s: %v\n", sub, err)
		return exitError
	}
	user := func(name string) (*passkey.User, error) {
		if strings.HasPrefix(name, "usr_") {
			return people.Passkeys.User(ctx, name)
		}
		users, err := people.Passkeys.Users(ctx)
		if err != nil {
			return nil, err
		}
		norm, err := passkey.NormalizeUsername(name)
		if err != nil {
			return nil, err
		}
		for _, u := range users {
			if u.Username == norm {
				return u, nil
			}
		}
		return nil, fmt.Errorf("no user %q", norm)
	}
	switch sub {
	case "list":
		users, err := people.Passkeys.Users(ctx)
		if err != nil {
			return fail(err)
		}
		type row struct {
			ID, Username, DisplayName, Role string
			Roles                           []string
			Passkeys                        int
			CreatedAt                       time.Time
		}
		rows := make([]row, 0, len(users))
		var b strings.Builder
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tUSERNAME\tNAME\tKEYWAY ROLE\tROLES\tPASSKEYS\tCREATED")
		for _, u := range users {
			creds, err := people.Passkeys.Credentials(ctx, u.ID)
			if err != nil {
				return fail(err)
			}
			rows = append(rows, row{u.ID, u.Username, u.DisplayName, string(u.Role), nonNilRoles(u.Roles), len(creds), u.CreatedAt})
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", u.ID, u.Username, u.DisplayName, u.Role, strings.Join(u.Roles, ","),
				len(creds), u.CreatedAt.Format(time.DateOnly))
		}
		_ = tw.Flush()
		return show(map[string]any{"users": rows}, strings.TrimRight(b.String(), "\n"))
	case "invite":
		tok, err := people.Passkeys.CreateLink(ctx, "invite", "", passkey.Role(*role), "cli", 7*24*time.Hour)
		if err != nil {
			return fail(err)
		}
		u := people.PublicURL + "/.keyway/portal/signup#invite=" + tok
		return show(map[string]string{"url": u, "role": *role, "expires_in": "168h"}, u)
	case "enrol-link":
		target, err := user(pos[0])
		if err != nil {
			return fail(err)
		}
		tok, err := people.Passkeys.CreateLink(ctx, "enrol", target.ID, target.Role, "cli", 24*time.Hour)
		if err != nil {
			return fail(err)
		}
		u := people.PublicURL + "/.keyway/portal/enrol#token=" + tok
		return show(map[string]string{"url": u, "user": target.Username, "expires_in": "24h"}, u)
	case "roles":
		target, err := user(pos[0])
		if err != nil {
			return fail(err)
		}
		set := false
		fs.Visit(func(f *flag.Flag) { set = set || f.Name == "set" })
		if set {
			roles := []string{}
			for r := range strings.SplitSeq(*setRoles, ",") {
				if r = strings.TrimSpace(r); r != "" {
					roles = append(roles, r)
				}
			}
			if target, err = people.Passkeys.SetRoles(ctx, target.ID, roles, "cli"); err != nil {
				return fail(err)
			}
		}
		return show(map[string]any{"user": target.Username, "roles": nonNilRoles(target.Roles)}, strings.Join(target.Roles, ","))
	case "export":
		target, err := user(pos[0])
		if err != nil {
			return fail(err)
		}
		exp, err := people.Privacy.Export(ctx, target.ID, "cli")
		if err != nil {
			return fail(err)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(exp)
		return exitOK
	case "erase":
		target, err := user(pos[0])
		if err != nil && !strings.HasPrefix(pos[0], "usr_") {
			return fail(err)
		}
		if !*yes {
			fmt.Fprintf(stderr, "keyway users erase: this erases %s for ever, with every copy of their personal data; run again with --yes\n", pos[0])
			return exitUsage
		}
		id := pos[0]
		if target != nil {
			id = target.ID
		}
		if err := people.Privacy.Erase(ctx, id, "cli"); err != nil {
			return fail(err)
		}
		return show(map[string]any{"erased": id}, "erased "+id)
	default: // revoke-sessions
		target, err := user(pos[0])
		if err != nil {
			return fail(err)
		}
		n, err := people.Sessions.RevokeUser(ctx, target.ID, "cli")
		if err != nil {
			return fail(err)
		}
		return show(map[string]any{"user": target.Username, "revoked": n}, fmt.Sprintf("ended %d session(s) of %s", n, target.Username))
	}
}

func nonNilRoles(r []string) []string {
	if r == nil {
		return []string{}
	}
	return r
}
