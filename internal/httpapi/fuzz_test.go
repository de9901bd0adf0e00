package httpapi

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keywayhq/keyway/internal/apikey"
)

// FuzzRequestBodies: every JSON body keyway's endpoints take, whatever a
// client sends: decoding never panics; a body that is not what the
// endpoint takes is a 400 (errBadJSON or apikey.ErrBadRequest, never an
// error that would answer 500); a broken body's message names only its
// shape, never a value; and what decodes into a key request turns into
// parameters or a 400.
func FuzzRequestBodies(f *testing.F) {
	for _, s := range []string{
		`{"name":"ci","owner":"service:ci","scopes":["orders:read"],"rate":{"rate":"10/s"},"expires_in":"720h"}`,
		`{"overlap":"0","expires_in":"90d"}`, `{"overlap":null}`, `{"reason":"leaked"}`, `{"roles":["ops","billing"]}`,
		`{"name":"x","cidrs":["10.0.0.0/8","::1"],"quota":{"limit":5,"period":"day"}}`, ``, ` `, `null`, `[]`, `{"nope":1}`,
		`{"name":"a"}{"name":"b"}`, `{"rate":{"rate":"1/0s","burst":-1}}`, `{"expires_at":"2027-01-01T00:00:00Z"}`,
		"{\"name\":\"\xff\"}", `{"name":"SECRETVALUE","owner":12}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		check := func(what string, err error) {
			t.Helper()
			if err == nil {
				return
			}
			if !errors.Is(err, errBadJSON) && !errors.Is(err, apikey.ErrBadRequest) {
				t.Fatalf("%s %q: %v is not a 400", what, body, err)
			}
			// A broken body is described by its shape only: a value in it
			// (a key pasted in the wrong field) is never echoed.
			if errors.Is(err, errBadJSON) && strings.Contains(body, "SECRETVALUE") && strings.Contains(err.Error(), "SECRETVALUE") {
				t.Fatalf("%s: the error echoes a value: %v", what, err)
			}
		}
		var ck createKeyRequest
		if err := decode(httptest.NewRequest("POST", "/v1/keys", strings.NewReader(body)), &ck); err == nil {
			_, err := createParams(ck)
			check("create params", err)
		} else {
			check("create", err)
		}
		var uk updateKeyRequest
		check("update", decode(httptest.NewRequest("PATCH", "/v1/keys/x", strings.NewReader(body)), &uk))
		var rr rotateRequest
		if err := decodeOptional(httptest.NewRequest("POST", "/v1/keys/x/rotate", strings.NewReader(body)), &rr); err == nil {
			_, err := rr.params()
			check("rotate params", err)
			if strings.TrimSpace(body) == "" && (rr.Overlap != nil || rr.ExpiresIn != "") {
				t.Fatal("an empty rotation body set something")
			}
		} else {
			check("rotate", err)
		}
		var roles struct {
			Roles *[]string `json:"roles"`
		}
		check("roles", decode(httptest.NewRequest("PUT", "/v1/users/x/roles", strings.NewReader(body)), &roles))
	})
}
