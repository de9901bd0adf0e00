package app

import (
	"context"
	"errors"
	"net/netip"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/session"
	"github.com/keywayhq/keyway/internal/tracing"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// The decision core's checks as child spans of the request's: a key
// check, a session check, the person behind a session, a key's quota.
// Each says how it ended (valid, invalid, error), never what it was given.

type tracedKeys struct {
	decision.KeyVerifier
	tracer trace.Tracer
}

func (t tracedKeys) Verify(ctx context.Context, raw string, client netip.Addr) (*apikey.Verified, error) {
	ctx, span := t.tracer.Start(ctx, "key check")
	defer span.End()
	v, err := t.KeyVerifier.Verify(ctx, raw, client)
	endCheck(span, err, errors.Is(err, apikey.ErrInvalid))
	return v, err
}

func (t tracedKeys) ConsumeQuota(ctx context.Context, v *apikey.Verified) (bool, error) {
	ctx, span := t.tracer.Start(ctx, "key quota")
	defer span.End()
	ok, err := t.KeyVerifier.ConsumeQuota(ctx, v)
	if err != nil {
		tracing.Fail(span, "the quota could not be read")
	} else {
		span.SetAttributes(attribute.Bool("keyway.quota_left", ok))
	}
	return ok, err
}

type tracedSessions struct {
	sessionVerifier
	tracer trace.Tracer
}

func (t tracedSessions) AuthenticateUser(ctx context.Context, token string) (*session.Session, *passkey.User, error) {
	ctx, span := t.tracer.Start(ctx, "session check")
	defer span.End()
	s, u, err := t.sessionVerifier.AuthenticateUser(ctx, token)
	endCheck(span, err, errors.Is(err, session.ErrNotFound))
	return s, u, err
}

func (t tracedSessions) Authenticate(ctx context.Context, token string) (*session.Session, error) {
	ctx, span := t.tracer.Start(ctx, "session check")
	defer span.End()
	s, err := t.sessionVerifier.Authenticate(ctx, token)
	endCheck(span, err, errors.Is(err, session.ErrNotFound))
	return s, err
}

var (
	checkValid   = attribute.String("keyway.check", "valid")
	checkInvalid = attribute.String("keyway.check", "invalid")
	checkError   = attribute.String("keyway.check", "error")
)

func endCheck(span trace.Span, err error, invalid bool) {
	switch {
	case err == nil:
		span.SetAttributes(checkValid)
	case invalid:
		span.SetAttributes(checkInvalid)
	default:
		span.SetAttributes(checkError)
		tracing.Fail(span, "the check could not be made")
	}
}
