// Package problem writes error responses as RFC 9457 problem details
// (application/problem+json). Every error keyway answers, whether from its own
// endpoints or from the gateway, goes through Write, so clients can branch on a
// stable Type and never see internal detail: what a client reads (Title,
// Detail) is kept apart from what is logged.
package problem

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Type is a stable problem type URI (RFC 9457 §3.1.1). Clients may branch on it;
// a Type is never renamed once released.
type Type string

// The problem types keyway answers with.
const (
	NotFound         Type = "urn:keyway:problem:not-found"
	MethodNotAllowed Type = "urn:keyway:problem:method-not-allowed"
	Unauthenticated  Type = "urn:keyway:problem:unauthenticated"
	Forbidden        Type = "urn:keyway:problem:forbidden"
	BodyTooLarge     Type = "urn:keyway:problem:body-too-large"
	HeadersTooLarge  Type = "urn:keyway:problem:headers-too-large"
	BadRequest       Type = "urn:keyway:problem:bad-request"
	BadGateway       Type = "urn:keyway:problem:bad-gateway"
	GatewayTimeout   Type = "urn:keyway:problem:gateway-timeout"
	Unavailable      Type = "urn:keyway:problem:unavailable"
	Internal         Type = "urn:keyway:problem:internal"
	RateLimited      Type = "urn:keyway:problem:rate-limited"
	QuotaExceeded    Type = "urn:keyway:problem:quota-exceeded"
	Conflict         Type = "urn:keyway:problem:conflict"
	CSRF             Type = "urn:keyway:problem:csrf"
	StepUpRequired   Type = "urn:keyway:problem:step-up-required"
	CeremonyFailed   Type = "urn:keyway:problem:ceremony-failed"
	TooManyAttempts  Type = "urn:keyway:problem:too-many-attempts"
	// MisdirectedRequest: the Host is not a name keyway answers to (421).
	MisdirectedRequest Type = "urn:keyway:problem:misdirected-request"
)

// Problem is one problem details object. Detail must never carry secrets or
// internal error text: it is shown to the client.
type Problem struct {
	Type   Type   `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Instance is the request ID, so a client can quote it to an operator who
	// then finds the logged detail.
	Instance string `json:"instance,omitempty"`
	// RetryAfter, when positive, is sent as the Retry-After header.
	RetryAfter time.Duration `json:"-"`
}

// New returns a Problem for status with the standard title.
func New(t Type, status int, detail string) *Problem {
	return &Problem{Type: t, Title: http.StatusText(status), Status: status, Detail: detail}
}

// Error makes a Problem usable as an error carrying its client-facing message.
func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

// Write sends p as application/problem+json. requestID, when not empty,
// becomes the Instance member.
func Write(w http.ResponseWriter, p *Problem, requestID string) {
	if requestID != "" && p.Instance == "" {
		cp := *p
		cp.Instance = "urn:keyway:request:" + requestID
		p = &cp
	}
	body, err := json.Marshal(p)
	if err != nil {
		// Cannot happen for this struct; fall back to a fixed body.
		body = []byte(`{"type":"urn:keyway:problem:internal","title":"Internal Server Error","status":500}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	if p.RetryAfter > 0 {
		secs := int64((p.RetryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	if p.Status == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
		h.Set("WWW-Authenticate", `Bearer realm="keyway"`)
	}
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}
