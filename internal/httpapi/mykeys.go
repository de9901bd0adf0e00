package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/problem"
)

// The portal's "my API keys": a signed-in person manages the keys they own
// (owner "user:<id>"). Creating one needs a fresh user-verified assertion;
// a key of someone else is answered like a key that does not exist.

func (a *auth) ownKey(r *http.Request, id *decision.Identity) (*apikey.Key, error) {
	k, err := a.cfg.Keys.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if k.Owner != id.Subject {
		return nil, apikey.ErrNotFound
	}
	return k, nil
}

func (a *auth) listMyKeys(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	keys, err := a.cfg.Keys.List(r.Context(), id.Subject)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"keys": NewKeysJSON(keys, a.now())})
}

func (a *auth) createMyKey(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	var req createKeyRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	req.Owner = id.Subject
	for _, sc := range req.Scopes {
		if sc == AdminScope || !slices.Contains(a.cfg.SelfServiceScopes, sc) {
			return problem.New(problem.Forbidden, http.StatusForbidden,
				fmt.Sprintf("scope %q cannot be given to your own keys; ask an administrator", sc))
		}
	}
	p, err := createParams(req)
	if err != nil {
		return err
	}
	raw, k, err := a.cfg.Keys.Create(r.Context(), p, id.Subject)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, createdKey{KeyJSON: NewKeyJSON(k, a.now()), Key: raw})
}

func (a *auth) rotateMyKey(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	k, err := a.ownKey(r, id)
	if err != nil {
		return err
	}
	var req rotateRequest
	if err := decodeOptional(r, &req); err != nil {
		return err
	}
	p, err := req.params()
	if err != nil {
		return err
	}
	raw, err := a.cfg.Keys.Rotate(r.Context(), k.ID, p, id.Subject)
	if err != nil {
		return err
	}
	k, err = a.cfg.Keys.Get(r.Context(), k.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, createdKey{KeyJSON: NewKeyJSON(k, a.now()), Key: raw})
}

func (a *auth) revokeMyKey(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	k, err := a.ownKey(r, id)
	if err != nil {
		return err
	}
	if err := a.cfg.Keys.Revoke(r.Context(), k.ID, "revoked by its owner", id.Subject); err != nil {
		return err
	}
	k, err = a.cfg.Keys.Get(r.Context(), k.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, NewKeyJSON(k, a.now()))
}

func (a *auth) myKeyUsage(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	k, err := a.ownKey(r, id)
	if err != nil {
		return err
	}
	window := 24 * time.Hour
	if r.URL.Query().Get("window") == "168h" {
		window = 7 * 24 * time.Hour
	}
	since := a.now().Add(-window).UTC().Truncate(time.Hour)
	rows, err := a.cfg.Keys.UsageSince(r.Context(), k.ID, since)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, NewUsageJSON(k.ID, since, rows))
}
