package sqlite

import (
	"errors"
	"testing"
)

// Constraint violations are told apart by the driver's result code (the
// conformance suite checks the domain errors that follow from it); an
// error's text alone never counts.
func TestIsUniqueIgnoresErrorText(t *testing.T) {
	if isUnique(errors.New("UNIQUE constraint failed: users.username")) {
		t.Fatal("an error's text alone must not count as a constraint violation")
	}
	if isUnique(nil) {
		t.Fatal("nil is no violation")
	}
}
