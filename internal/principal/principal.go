// Package principal names who acts: a person (a user account) or a program
// (a service account). It is a leaf package: the decision core, the audit
// log, API key owners and the identity headers all use its one spelling,
// "user:<id>" or "service:<name>", instead of assembling strings.
package principal

import (
	"errors"
	"regexp"
	"strings"
)

// Kind is what sort of principal acts.
type Kind string

// The kinds.
const (
	KindUser    Kind = "user"
	KindService Kind = "service"
)

// Principal is a user or a service account. The zero value is nobody.
type Principal struct {
	Kind Kind
	// ID is the user's ID ("usr_…") or the service account's name.
	ID string
}

// User is the principal of the person with that user ID.
func User(id string) Principal { return Principal{Kind: KindUser, ID: id} }

// Service is the principal of the service account with that name.
func Service(name string) Principal { return Principal{Kind: KindService, ID: name} }

// ErrInvalid means a string is not "user:<id>" or "service:<name>".
var ErrInvalid = errors.New(`a principal is "user:<id>" or "service:<name>"`)

// Parse reads "user:<id>" or "service:<name>". It checks the form only;
// the owner rules of API keys are stricter (see apikey).
func Parse(s string) (Principal, error) {
	kind, id, ok := strings.Cut(s, ":")
	if !ok || id == "" {
		return Principal{}, ErrInvalid
	}
	switch Kind(kind) {
	case KindUser, KindService:
		return Principal{Kind: Kind(kind), ID: id}, nil
	}
	return Principal{}, ErrInvalid
}

// String is "user:<id>" or "service:<name>", or "" for nobody.
func (p Principal) String() string {
	if p.ID == "" {
		return ""
	}
	return string(p.Kind) + ":" + p.ID
}

// IsZero reports whether p is nobody.
func (p Principal) IsZero() bool { return p.ID == "" }

// IsUser reports whether p is a person.
func (p Principal) IsUser() bool { return p.Kind == KindUser && p.ID != "" }

// IsService reports whether p is a service account.
func (p Principal) IsService() bool { return p.Kind == KindService && p.ID != "" }

// ValidRole reports whether name is a valid role name: 1 to 64
// characters, a-z, 0-9 and . _ : -, starting with a letter or digit. The
// config's routes and the roles given to people follow the same rule, so
// that a route can name every role a person can hold.
func ValidRole(name string) bool { return roleRE.MatchString(name) }

var roleRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._:-]{0,63}$`)
