package sealed

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/keywayhq/keyway/internal/crypt"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/session"
)

// Legacy is what a store offers Use: its rows, and the SQL that reads the
// ones an older keyway left in clear and seals them.
type Legacy interface {
	// SealedUsers counts the accounts whose fields are sealed.
	SealedUsers(ctx context.Context) (int, error)
	// KEKMark records id as the KEK the store's data keys are wrapped
	// under, unless one is recorded already (or always, with replace),
	// and returns the one recorded.
	KEKMark(ctx context.Context, id string, replace bool) (string, error)
	// ClearUsers, ClearCredentials and ClearSessions are the rows left
	// in clear (their sealed columns NULL): IDs and the clear fields.
	ClearUsers(ctx context.Context) ([]passkey.User, error)
	ClearCredentials(ctx context.Context) ([]passkey.Credential, error)
	ClearSessions(ctx context.Context) ([]session.Session, error)
	// SealUserRow, SealCredentialRow and SealSessionRow store the sealed
	// fields of one row and empty its clear ones, if it is still in clear.
	SealUserRow(ctx context.Context, id string, u User) error
	SealCredentialRow(ctx context.Context, id, name []byte) error
	SealSessionRow(ctx context.Context, id string, device []byte) error
}

// Use checks that s opens the store's data keys, then seals what an older
// keyway left in clear (once; a store with nothing left in clear does
// nothing here). A store restored without its key store, or started with
// another KEK, is refused now, not at each person's next request. Nodes
// starting together may seal the same row: each update applies only to a
// row still in clear.
func Use(ctx context.Context, s *crypt.Sealer, l Legacy) error {
	haveKeys, err := s.Check(ctx)
	if err != nil {
		return fmt.Errorf("the data keys do not open with this KEK (%w): start keyway with the KEK ring the data was sealed under", err)
	}
	// Every node must hold the KEK the store's data keys are wrapped under:
	// nodes started with KEK files of their own would each wrap new
	// people's keys under theirs, and fail on each other's.
	mark, err := l.KEKMark(ctx, s.Ring().Current().ID, false)
	if err != nil {
		return err
	}
	if !slices.Contains(s.Ring().IDs(), mark) {
		return fmt.Errorf("this store's data keys are wrapped under KEK %s, which this node's KEK ring (%s) does not hold: give every node the same ring (KEYWAY_KEK, data_protection.kek_command or the same kek.key)",
			mark, strings.Join(s.Ring().IDs(), ", "))
	}
	n, err := l.SealedUsers(ctx)
	if err != nil {
		return err
	}
	if n > 0 && !haveKeys {
		return fmt.Errorf("the store holds %d people but the key store has none of their data keys: restore the key store from its backup; without it their personal data cannot be read", n)
	}
	if err := sealLegacy(ctx, s, l); err != nil {
		return fmt.Errorf("seal the personal data of older rows: %w", err)
	}
	return nil
}

func sealLegacy(ctx context.Context, s *crypt.Sealer, l Legacy) error {
	users, err := l.ClearUsers(ctx)
	if err != nil {
		return err
	}
	for _, u := range users {
		if err := s.EnsureUserKey(ctx, u.ID); err != nil {
			return err
		}
		su, err := SealUser(ctx, s, &u)
		if err != nil {
			return err
		}
		if err := l.SealUserRow(ctx, u.ID, su); err != nil {
			return err
		}
	}
	creds, err := l.ClearCredentials(ctx)
	if err != nil {
		return err
	}
	for _, c := range creds {
		name, err := SealCredentialName(ctx, s, &c)
		if err != nil {
			return err
		}
		if err := l.SealCredentialRow(ctx, c.ID, name); err != nil {
			return err
		}
	}
	sessions, err := l.ClearSessions(ctx)
	if err != nil {
		return err
	}
	for _, ss := range sessions {
		device, err := SealDevice(ctx, s, &ss)
		if err != nil {
			return err
		}
		if err := l.SealSessionRow(ctx, ss.ID, device); err != nil {
			return err
		}
	}
	return nil
}
