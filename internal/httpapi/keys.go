package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/duration"
	"github.com/keywayhq/keyway/internal/ratelimit"
)

// KeyAdmin is what the admin API needs of the apikey service.
type KeyAdmin interface {
	Create(ctx context.Context, p apikey.CreateParams, actor string) (string, *apikey.Key, error)
	Get(ctx context.Context, id string) (*apikey.Key, error)
	List(ctx context.Context, owner string) ([]*apikey.Key, error)
	Update(ctx context.Context, id string, p apikey.UpdateParams, actor string) (*apikey.Key, error)
	Rotate(ctx context.Context, id string, p apikey.RotateParams, actor string) (string, error)
	Revoke(ctx context.Context, id, reason, actor string) error
	Delete(ctx context.Context, id, actor string) error
	UsageSince(ctx context.Context, id string, since time.Time) ([]apikey.UsageRow, error)
	Verify(ctx context.Context, raw string, client netip.Addr) (*apikey.Verified, error)
}

// AdminScope is the scope an API key needs to call the admin API.
const AdminScope = apikey.AdminScope

// errBadJSON wraps request bodies that do not decode.
var errBadJSON = errors.New("invalid JSON body")

// decode reads a JSON body strictly: unknown fields and trailing data are errors.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s", errBadJSON, jsonErrorText(err))
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON object", errBadJSON)
	}
	return nil
}

// decodeOptional is decode for bodies that may be left out: an empty body
// (or only white space) leaves v as it is; anything else must be valid.
func decodeOptional(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("%w: %s", errBadJSON, jsonErrorText(err))
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON object", errBadJSON)
	}
	return nil
}

// jsonErrorText keeps decoder messages that are about the shape of the
// input and drops anything else.
func jsonErrorText(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type)
	case errors.Is(err, io.EOF):
		return "empty body"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	return "malformed body"
}

// KeyJSON is the API representation of a key. It never holds a secret.
type KeyJSON struct {
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	Owner        string     `json:"owner"`
	Env          string     `json:"env"`
	Status       string     `json:"status"`
	Scopes       []string   `json:"scopes"`
	Rate         *RateJSON  `json:"rate,omitempty"`
	Quota        *QuotaJSON `json:"quota,omitempty"`
	CIDRs        []string   `json:"cidrs"`
	CreatedAt    time.Time  `json:"created_at"`
	ExpiresAt    time.Time  `json:"expires_at"`
	RevokedAt    *time.Time `json:"revoked_at,omitempty"`
	RevokeReason string     `json:"revoke_reason,omitempty"`
	LastUsedAt   *time.Time `json:"last_used_at,omitempty"`
	Client       string     `json:"client,omitempty"`
	// OldSecretExpiresAt is when the secret a rotation retired stops
	// working (absent when none still works).
	OldSecretExpiresAt *time.Time `json:"old_secret_expires_at,omitempty"`
}

// RateJSON is a rate limit: "100/min" with an optional burst.
type RateJSON struct {
	Rate  string `json:"rate"`
	Burst int64  `json:"burst,omitempty"`
}

// QuotaJSON is a quota.
type QuotaJSON struct {
	Limit  int64  `json:"limit"`
	Period string `json:"period"`
}

// NewKeyJSON renders k at time now.
func NewKeyJSON(k *apikey.Key, now time.Time) KeyJSON {
	j := KeyJSON{
		ID: apikey.DisplayID(k.ID), Name: k.Name, Owner: k.Owner, Env: string(k.Env), Status: "active",
		Scopes: k.Scopes, CIDRs: []string{}, CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, RevokeReason: k.RevokeReason,
		Client: k.Client,
	}
	if j.Scopes == nil {
		j.Scopes = []string{}
	}
	if !now.Before(k.ExpiresAt) {
		j.Status = "expired"
	}
	if !k.RevokedAt.IsZero() {
		j.Status = "revoked"
		t := k.RevokedAt
		j.RevokedAt = &t
	}
	if !k.LastUsedAt.IsZero() {
		t := k.LastUsedAt
		j.LastUsedAt = &t
	}
	if k.Rate.Count > 0 {
		j.Rate = &RateJSON{Rate: ratelimit.Limit{Count: k.Rate.Count, Period: k.Rate.Period}.String(), Burst: k.Rate.Burst}
	}
	if k.Quota.Period != apikey.QuotaNone {
		j.Quota = &QuotaJSON{Limit: k.Quota.Limit, Period: string(k.Quota.Period)}
	}
	for _, p := range k.CIDRs {
		j.CIDRs = append(j.CIDRs, p.String())
	}
	if k.OldSecretUntil.After(now) && k.RevokedAt.IsZero() {
		t := k.OldSecretUntil
		j.OldSecretExpiresAt = &t
	}
	return j
}

// ParseRate turns a RateJSON into a key rate.
func ParseRate(r *RateJSON) (apikey.Rate, error) {
	if r == nil || r.Rate == "" {
		return apikey.Rate{}, nil
	}
	l, err := ratelimit.ParseLimit(r.Rate)
	if err != nil {
		return apikey.Rate{}, fmt.Errorf("%w: rate: %s", apikey.ErrBadRequest, err.Error())
	}
	switch {
	case r.Burst != 0 && l.Burst != 0 && r.Burst != l.Burst:
		return apikey.Rate{}, fmt.Errorf("%w: rate: burst given twice, %d and %d", apikey.ErrBadRequest, l.Burst, r.Burst)
	case r.Burst != 0:
		l.Burst = r.Burst
	}
	if err := l.Validate(); err != nil {
		return apikey.Rate{}, fmt.Errorf("%w: rate: %s", apikey.ErrBadRequest, err.Error())
	}
	return apikey.Rate{Count: l.Count, Period: l.Period, Burst: l.Burst}, nil
}

// ParseCIDRs parses networks; a bare address stands for itself alone.
func ParseCIDRs(in []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(in))
	for _, s := range in {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%w: %q is not a CIDR", apikey.ErrBadRequest, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p)
	}
	return out, nil
}

type createKeyRequest struct {
	Name      string     `json:"name"`
	Owner     string     `json:"owner"`
	Env       string     `json:"env"`
	Scopes    []string   `json:"scopes"`
	Rate      *RateJSON  `json:"rate"`
	Quota     *QuotaJSON `json:"quota"`
	CIDRs     []string   `json:"cidrs"`
	ExpiresIn string     `json:"expires_in"`
	Client    string     `json:"client"`
}

type createdKey struct {
	KeyJSON
	// Key is the only copy of the secret: it is shown once.
	Key string `json:"key"`
}

type updateKeyRequest struct {
	Name      *string    `json:"name"`
	Scopes    *[]string  `json:"scopes"`
	Rate      *RateJSON  `json:"rate"`
	Quota     *QuotaJSON `json:"quota"`
	CIDRs     *[]string  `json:"cidrs"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// actor names who acts through the admin API in the audit trail: the
// service account and the key it used ("service:ops/key_…").
func (s *adminServer) actor(r *http.Request) string {
	if id, ok := r.Context().Value(adminKey{}).(*decision.Identity); ok {
		return id.Subject + "/" + id.KeyID
	}
	return "admin"
}

type adminKey struct{}

// authenticate admits only callers holding a service account's API key
// with AdminScope: the decision core's whole key sequence (the configured
// header, the trusted-proxy rules, the key's networks, rate, quota and
// usage).
func (s *adminServer) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client := s.clientIP.Resolve(r)
		f := s.decider.FactsFrom(r, s.route, client, "")
		d := s.decider.Decide(r.Context(), s.route, &f)
		if !d.Allowed() {
			s.decider.WriteDenial(w, &d, "")
			return
		}
		s.decider.SetHeaders(w.Header(), &d)
		ctx := context.WithValue(r.Context(), adminKey{}, &d.Identity)
		if client.Client.IsValid() {
			ctx = audit.WithFrom(ctx, client.Client.String()) // the admin's changes say where they came from
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func (s *adminServer) listKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.keys.List(r.Context(), r.URL.Query().Get("owner"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"keys": NewKeysJSON(keys, s.now())})
}

// NewKeysJSON renders a list of keys at time now.
func NewKeysJSON(keys []*apikey.Key, now time.Time) []KeyJSON {
	out := make([]KeyJSON, 0, len(keys))
	for _, k := range keys {
		out = append(out, NewKeyJSON(k, now))
	}
	return out
}

// NewUsageJSON renders a key's usage buckets from since on.
func NewUsageJSON(id string, since time.Time, rows []apikey.UsageRow) UsageJSON {
	out := UsageJSON{ID: apikey.DisplayID(id), Since: since, Totals: map[string]int64{}, Buckets: []UsageBucketJSON{}}
	for _, row := range rows {
		out.Totals[string(row.Outcome)] += row.Count
		out.Buckets = append(out.Buckets, UsageBucketJSON{Hour: row.Hour, Outcome: string(row.Outcome), Count: row.Count})
	}
	return out
}

func (s *adminServer) createKey(w http.ResponseWriter, r *http.Request) error {
	var req createKeyRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	p, err := createParams(req)
	if err != nil {
		return err
	}
	raw, k, err := s.keys.Create(r.Context(), p, s.actor(r))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, createdKey{KeyJSON: NewKeyJSON(k, s.now()), Key: raw})
}

func createParams(req createKeyRequest) (apikey.CreateParams, error) {
	p := apikey.CreateParams{Name: req.Name, Owner: req.Owner, Env: apikey.Env(req.Env), Scopes: req.Scopes, Client: req.Client}
	var err error
	if p.Rate, err = ParseRate(req.Rate); err != nil {
		return p, err
	}
	if req.Quota != nil {
		p.Quota = apikey.Quota{Limit: req.Quota.Limit, Period: apikey.QuotaPeriod(req.Quota.Period)}
	}
	if p.CIDRs, err = ParseCIDRs(req.CIDRs); err != nil {
		return p, err
	}
	if req.ExpiresIn != "" {
		if p.TTL, err = duration.Parse(req.ExpiresIn); err != nil || p.TTL <= 0 {
			return p, fmt.Errorf("%w: expires_in must be a positive duration like 30d or 720h", apikey.ErrBadRequest)
		}
	}
	return p, nil
}

func (s *adminServer) getKey(w http.ResponseWriter, r *http.Request) error {
	k, err := s.keys.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, NewKeyJSON(k, s.now()))
}

func (s *adminServer) updateKey(w http.ResponseWriter, r *http.Request) error {
	var req updateKeyRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	p := apikey.UpdateParams{Name: req.Name, Scopes: req.Scopes, ExpiresAt: req.ExpiresAt}
	if req.Rate != nil {
		rate, err := ParseRate(req.Rate)
		if err != nil {
			return err
		}
		p.Rate = &rate
	}
	if req.Quota != nil {
		p.Quota = &apikey.Quota{Limit: req.Quota.Limit, Period: apikey.QuotaPeriod(req.Quota.Period)}
	}
	if req.CIDRs != nil {
		cidrs, err := ParseCIDRs(*req.CIDRs)
		if err != nil {
			return err
		}
		p.CIDRs = &cidrs
	}
	k, err := s.keys.Update(r.Context(), r.PathValue("id"), p, s.actor(r))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, NewKeyJSON(k, s.now()))
}

// rotateRequest is the body of a rotation; every field may be left out
// (an empty body too).
type rotateRequest struct {
	// Overlap is how long the old secret keeps working: default 24h, "0"
	// ends it at once.
	Overlap *string `json:"overlap"`
	// ExpiresIn gives the key a new lifetime from now.
	ExpiresIn string `json:"expires_in"`
}

func (req rotateRequest) params() (apikey.RotateParams, error) {
	var p apikey.RotateParams
	if req.Overlap != nil {
		d, err := duration.Parse(*req.Overlap)
		if err != nil {
			return p, fmt.Errorf("%w: overlap must be a duration like 24h or 7d, or 0 to end the old secret now", apikey.ErrBadRequest)
		}
		p.Overlap = &d
	}
	if req.ExpiresIn != "" {
		d, err := duration.Parse(req.ExpiresIn)
		if err != nil || d <= 0 {
			return p, fmt.Errorf("%w: expires_in must be a positive duration like 30d or 720h", apikey.ErrBadRequest)
		}
		p.TTL = d
	}
	return p, nil
}

func (s *adminServer) rotateKey(w http.ResponseWriter, r *http.Request) error {
	var req rotateRequest
	if err := decodeOptional(r, &req); err != nil {
		return err
	}
	p, err := req.params()
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	raw, err := s.keys.Rotate(r.Context(), id, p, s.actor(r))
	if err != nil {
		return err
	}
	k, err := s.keys.Get(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, createdKey{KeyJSON: NewKeyJSON(k, s.now()), Key: raw})
}

func (s *adminServer) revokeKey(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Reason string `json:"reason"`
	}
	if err := decodeOptional(r, &req); err != nil { // no body: no reason given
		return err
	}
	id := r.PathValue("id")
	if err := s.keys.Revoke(r.Context(), id, req.Reason, s.actor(r)); err != nil {
		return err
	}
	k, err := s.keys.Get(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, NewKeyJSON(k, s.now()))
}

func (s *adminServer) deleteKey(w http.ResponseWriter, r *http.Request) error {
	if err := s.keys.Delete(r.Context(), r.PathValue("id"), s.actor(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// UsageJSON is a key's usage report.
type UsageJSON struct {
	ID      string            `json:"id"`
	Since   time.Time         `json:"since"`
	Totals  map[string]int64  `json:"totals"`
	Buckets []UsageBucketJSON `json:"buckets"`
}

// UsageBucketJSON is one hour of usage.
type UsageBucketJSON struct {
	Hour    time.Time `json:"hour"`
	Outcome string    `json:"outcome"`
	Count   int64     `json:"count"`
}

func (s *adminServer) keyUsage(w http.ResponseWriter, r *http.Request) error {
	window := 24 * time.Hour
	if v := r.URL.Query().Get("window"); v != "" {
		d, err := duration.Parse(v)
		if err != nil || d <= 0 || d > 90*24*time.Hour {
			return fmt.Errorf("%w: window must be a duration up to 90d", apikey.ErrBadRequest)
		}
		window = d
	}
	id := r.PathValue("id")
	k, err := s.keys.Get(r.Context(), id)
	if err != nil {
		return err
	}
	since := s.now().Add(-window).UTC().Truncate(time.Hour)
	rows, err := s.keys.UsageSince(r.Context(), k.ID, since)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, NewUsageJSON(k.ID, since, rows))
}

func badRequest(msg string) error {
	return fmt.Errorf("%w: %s", errBadJSON, msg)
}
