package portal

import (
	"bytes"
	"net/http"
	"slices"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/principal"
	"github.com/keywayhq/keyway/internal/session"
)

// ---- signed-out pages ----

type signinData struct {
	Next       string
	OpenSignUp bool
}

func (p *portal) signin(r *http.Request, v *visitor) (*view, error) {
	next := safeNext(r.URL.Query().Get("next"))
	if v.Full() {
		if next == "" {
			next = Prefix + "account"
		}
		return nil, redirect(next)
	}
	return &view{Title: "Sign in", Data: signinData{Next: next, OpenSignUp: p.cfg.OpenSignUp}}, nil
}

type signupData struct {
	OpenSignUp bool
}

func (p *portal) signup(_ *http.Request, _ *visitor) (*view, error) {
	return &view{Title: "Create an account", Data: signupData{OpenSignUp: p.cfg.OpenSignUp}}, nil
}

func (p *portal) setup(_ *http.Request, _ *visitor) (*view, error) {
	return &view{Title: "Set up keyway"}, nil
}

// linkData is the data of the enrol and recover pages: Restricted says the
// visitor already holds a recovery session and only needs to register a
// passkey (say, after cancelling the browser's prompt once).
type linkData struct {
	Restricted bool
	Name       string
}

func (p *portal) enrol(_ *http.Request, v *visitor) (*view, error) {
	return &view{Title: "Register a passkey", Data: restricted(v)}, nil
}

func (p *portal) recoverPage(_ *http.Request, v *visitor) (*view, error) {
	return &view{Title: "Recover your account", Data: restricted(v)}, nil
}

func restricted(v *visitor) linkData {
	if v.User != nil && v.Session.Restricted {
		return linkData{Restricted: true, Name: v.User.DisplayName}
	}
	return linkData{}
}

// ---- a person's pages ----

type passkeyRow struct {
	Ref        string
	Name       string
	Provider   string
	Synced     bool
	Current    bool
	CreatedAt  time.Time
	LastUsedAt time.Time
}

type accountData struct {
	Passkeys  []passkeyRow
	CodesLeft int
}

func (p *portal) account(r *http.Request, v *visitor) (*view, error) {
	creds, err := p.cfg.Accounts.Credentials(r.Context(), v.User.ID)
	if err != nil {
		return nil, err
	}
	left, err := p.cfg.Accounts.UnusedRecoveryCodes(r.Context(), v.User.ID)
	if err != nil {
		return nil, err
	}
	d := accountData{CodesLeft: left}
	for _, c := range creds {
		d.Passkeys = append(d.Passkeys, passkeyRow{
			Ref: passkey.CredentialRef(c.ID), Name: c.Name, Provider: passkey.ProviderName(c.AAGUID), Synced: c.Synced(),
			Current:   v.Session.CredentialID != nil && bytes.Equal(c.ID, v.Session.CredentialID),
			CreatedAt: c.CreatedAt, LastUsedAt: c.LastUsedAt,
		})
	}
	return &view{Title: "Your account", Data: d}, nil
}

type sessionRow struct {
	ID         string
	Device     string
	UserAgent  string
	IP         string
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time
	Current    bool
	Restricted bool
}

func sessionRows(list []*session.Session, current string) []sessionRow {
	out := make([]sessionRow, 0, len(list))
	for _, s := range list {
		out = append(out, sessionRow{
			ID: s.ID, Device: describeAgent(s.UserAgent), UserAgent: s.UserAgent, IP: s.IP,
			CreatedAt: s.CreatedAt, LastSeenAt: s.LastSeenAt, ExpiresAt: s.ExpiresAt,
			Current: s.ID == current, Restricted: s.Restricted,
		})
	}
	return out
}

type sessionsData struct {
	Sessions []sessionRow
	Others   int
}

func (p *portal) sessions(r *http.Request, v *visitor) (*view, error) {
	list, err := p.cfg.Sessions.List(r.Context(), v.User.ID)
	if err != nil {
		return nil, err
	}
	d := sessionsData{Sessions: sessionRows(list, v.Session.ID)}
	for _, s := range d.Sessions {
		if !s.Current {
			d.Others++
		}
	}
	return &view{Title: "Your sessions", Data: d}, nil
}

type keyRow struct {
	ID         string
	Name       string
	Owner      string
	Env        string
	Status     string
	Scopes     []string
	Rate       string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	RevokedAt  time.Time
	LastUsedAt time.Time
	// OldSecretUntil is when a rotated-out secret stops working, zero
	// when none still works.
	OldSecretUntil time.Time
	Day            *chart
	Week           *chart
}

func keyRowOf(k *apikey.Key, now time.Time) keyRow {
	row := keyRow{ID: apikey.DisplayID(k.ID), Name: k.Name, Owner: k.Owner, Env: string(k.Env), Status: "active",
		Scopes: k.Scopes, CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt, LastUsedAt: k.LastUsedAt}
	switch {
	case !k.RevokedAt.IsZero():
		row.Status = "revoked"
	case !now.Before(k.ExpiresAt):
		row.Status = "expired"
	}
	if k.Rate.Count > 0 {
		row.Rate = rateString(k.Rate)
	}
	if k.OldSecretUntil.After(now) && row.Status == "active" {
		row.OldSecretUntil = k.OldSecretUntil
	}
	return row
}

// maxCharted bounds the usage queries of one keys page.
const maxCharted = 50

type keysData struct {
	Keys []keyRow
}

func (p *portal) keys(r *http.Request, v *visitor) (*view, error) {
	list, err := p.cfg.Keys.List(r.Context(), principal.User(v.User.ID).String())
	if err != nil {
		return nil, err
	}
	now := p.cfg.Now()
	sortKeys(list)
	d := keysData{}
	for i, k := range list {
		row := keyRowOf(k, now)
		if i < maxCharted {
			since := weekStart(now)
			rows, err := p.cfg.Keys.UsageSince(r.Context(), k.ID, since)
			if err != nil {
				return nil, err
			}
			row.Day, row.Week = dayChart(rows, now), weekChart(rows, now)
			row.Day.ID, row.Week.ID = "usage-"+k.ID+"-day", "usage-"+k.ID+"-week"
		}
		d.Keys = append(d.Keys, row)
	}
	return &view{Title: "Your API keys", Data: d}, nil
}

// sortKeys puts live keys first, newest first.
func sortKeys(list []*apikey.Key) {
	slices.SortStableFunc(list, func(a, b *apikey.Key) int {
		ar, br := !a.RevokedAt.IsZero(), !b.RevokedAt.IsZero()
		if ar != br {
			if ar {
				return 1
			}
			return -1
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
}

// ---- admin pages ----

type userRow struct {
	ID          string
	Username    string
	DisplayName string
	Role        string
	Roles       []string
	CreatedAt   time.Time
	Disabled    bool
	Passkeys    int
	Sessions    int
	Self        bool
}

type adminUsersData struct {
	Users []userRow
}

func (p *portal) adminUsers(r *http.Request, v *visitor) (*view, error) {
	users, err := p.cfg.Accounts.Users(r.Context())
	if err != nil {
		return nil, err
	}
	d := adminUsersData{}
	for _, u := range users {
		creds, err := p.cfg.Accounts.Credentials(r.Context(), u.ID)
		if err != nil {
			return nil, err
		}
		list, err := p.cfg.Sessions.List(r.Context(), u.ID)
		if err != nil {
			return nil, err
		}
		d.Users = append(d.Users, userRow{ID: u.ID, Username: u.Username, DisplayName: u.DisplayName, Role: string(u.Role), Roles: u.Roles,
			CreatedAt: u.CreatedAt, Disabled: !u.DisabledAt.IsZero(), Passkeys: len(creds), Sessions: len(list),
			Self: u.ID == v.User.ID})
	}
	return &view{Title: "Users", Data: d}, nil
}

type userSessions struct {
	Username    string
	DisplayName string
	Sessions    []sessionRow
}

type adminSessionsData struct {
	Users []userSessions
	Total int
}

func (p *portal) adminSessions(r *http.Request, v *visitor) (*view, error) {
	users, err := p.cfg.Accounts.Users(r.Context())
	if err != nil {
		return nil, err
	}
	d := adminSessionsData{}
	for _, u := range users {
		list, err := p.cfg.Sessions.List(r.Context(), u.ID)
		if err != nil {
			return nil, err
		}
		if len(list) == 0 {
			continue
		}
		d.Users = append(d.Users, userSessions{Username: u.Username, DisplayName: u.DisplayName,
			Sessions: sessionRows(list, v.Session.ID)})
		d.Total += len(list)
	}
	return &view{Title: "All sessions", Data: d}, nil
}

type adminKeysData struct {
	Keys []keyRow
}

func (p *portal) adminKeys(r *http.Request, _ *visitor) (*view, error) {
	list, err := p.cfg.Keys.List(r.Context(), "")
	if err != nil {
		return nil, err
	}
	sortKeys(list)
	now := p.cfg.Now()
	d := adminKeysData{}
	for _, k := range list {
		d.Keys = append(d.Keys, keyRowOf(k, now))
	}
	return &view{Title: "All API keys", Data: d}, nil
}

// auditLimit is how many events the audit page shows.
const auditLimit = 200

type auditRow struct {
	AuditEntry
	Details []detail
}

type detail struct{ Key, Value string }

type adminAuditData struct {
	Available bool
	Events    []auditRow
	Limit     int
}

func (p *portal) adminAudit(r *http.Request, _ *visitor) (*view, error) {
	d := adminAuditData{Available: p.cfg.Audit != nil, Limit: auditLimit}
	if p.cfg.Audit != nil {
		evs, err := p.cfg.Audit.Recent(r.Context(), auditLimit)
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			row := auditRow{AuditEntry: e}
			for _, k := range sortedKeys(e.Detail) {
				row.Details = append(row.Details, detail{k, e.Detail[k]})
			}
			d.Events = append(d.Events, row)
		}
	}
	return &view{Title: "Audit trail", Data: d}, nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
