package httpapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"time"

	"github.com/keywayhq/keyway/internal/problem"
	"github.com/keywayhq/keyway/internal/ratelimit"
)

// LeakReporter revokes reported keys. It reports whether raw was a real key.
type LeakReporter interface {
	ReportLeak(ctx context.Context, raw, source string) (bool, error)
}

// LeakConfig configures POST /.keyway/keys/report-leak.
type LeakConfig struct {
	// Reporter revokes keys. Nil disables the endpoint (404).
	Reporter LeakReporter
	// Limit is the per-client rate limit, counted in tokens: each token of
	// a report costs one event, since each may cost a store read. A report
	// holds at most MaxReportTokens tokens, or the limit's burst if lower.
	// Required when Reporter is set.
	Limit ratelimit.Limit
	// VerifyKeys are the signature keys by identifier (GitHub's
	// Github-Public-Key-Identifier). When not empty, a request that carries
	// a signature must carry a valid one.
	VerifyKeys map[string]*ecdsa.PublicKey
}

// The headers of GitHub's secret scanning partner program.
const (
	sigKeyIDHeader = "Github-Public-Key-Identifier"
	sigHeader      = "Github-Public-Key-Signature"
)

// leakToken is one entry of the partner payload.
type leakToken struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

// leakResult answers one token without echoing it: GitHub's feedback format
// names a token by its SHA-256.
type leakResult struct {
	TokenHash string `json:"token_hash"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"`
}

type leakHandler struct {
	cfg   LeakConfig
	limit BulkLimiter[netip.Addr]
}

// MaxReportTokens bounds the tokens of one leak report.
const MaxReportTokens = 100

func (h *leakHandler) spend(r *http.Request, n int) error {
	info, ok := requestInfo(r)
	if !ok {
		return nil
	}
	if d := h.limit.AllowN(info.Client.Source, h.cfg.Limit, int64(n)); !d.Allowed {
		if d.Unavailable {
			return problem.New(problem.Unavailable, http.StatusServiceUnavailable, "temporarily unavailable; try again shortly")
		}
		p := problem.New(problem.RateLimited, http.StatusTooManyRequests, "too many leak reports; retry later")
		p.RetryAfter = max(d.RetryAfter, time.Second)
		return p
	}
	return nil
}

func (h *leakHandler) serve(w http.ResponseWriter, r *http.Request) error {
	// One event for the request itself before the body is even read, the
	// rest for its tokens once they are counted.
	if err := h.spend(r, 1); err != nil {
		return err
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil {
		return fmt.Errorf("%w: unreadable body", errBadJSON)
	}
	if len(body) > 1<<20 {
		return problem.New(problem.BodyTooLarge, http.StatusRequestEntityTooLarge, "a leak report is at most 1 MiB")
	}
	if sig := r.Header.Get(sigHeader); sig != "" && len(h.cfg.VerifyKeys) > 0 {
		if !h.verify(r.Header.Get(sigKeyIDHeader), sig, body) {
			return problem.New(problem.Unauthenticated, http.StatusUnauthorized, "the report's signature does not verify")
		}
	}
	var tokens []leakToken
	if err := json.Unmarshal(body, &tokens); err != nil || len(tokens) == 0 {
		return fmt.Errorf(`%w: expected a JSON array of {"token","type","url","source"}`, errBadJSON)
	}
	most := min(MaxReportTokens, int(h.cfg.Limit.EffectiveBurst()))
	if len(tokens) > most {
		return fmt.Errorf("%w: at most %d tokens per report", errBadJSON, most)
	}
	if len(tokens) > 1 {
		if err := h.spend(r, len(tokens)-1); err != nil {
			return err
		}
	}
	out := make([]leakResult, 0, len(tokens))
	for _, t := range tokens {
		real, err := h.cfg.Reporter.ReportLeak(r.Context(), t.Token, t.Source+" "+t.URL)
		if err != nil {
			return err
		}
		label := "false_positive"
		if real {
			label = "true_positive"
		}
		sum := sha256.Sum256([]byte(t.Token))
		out = append(out, leakResult{TokenHash: hex.EncodeToString(sum[:]), TokenType: t.Type, Label: label})
	}
	return writeJSON(w, http.StatusOK, out)
}

func (h *leakHandler) verify(keyID, sigB64 string, body []byte) bool {
	pub := h.cfg.VerifyKeys[keyID]
	if pub == nil {
		return false
	}
	sig, err := base64.StdEncoding.DecodeString(sigB64)
	if err != nil {
		return false
	}
	sum := sha256.Sum256(body)
	return ecdsa.VerifyASN1(pub, sum[:], sig)
}

// ParseVerifyKeys reads GitHub's secret-scanning public key document:
// {"public_keys":[{"key_identifier":"…","key":"-----BEGIN PUBLIC KEY-----…"}]}.
func ParseVerifyKeys(data []byte) (map[string]*ecdsa.PublicKey, error) {
	var doc struct {
		PublicKeys []struct {
			KeyIdentifier string `json:"key_identifier"`
			Key           string `json:"key"`
		} `json:"public_keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("verify keys: %w", err)
	}
	if len(doc.PublicKeys) == 0 {
		return nil, errors.New("verify keys: no public_keys")
	}
	out := make(map[string]*ecdsa.PublicKey, len(doc.PublicKeys))
	for _, k := range doc.PublicKeys {
		block, _ := pem.Decode([]byte(k.Key))
		if block == nil {
			return nil, fmt.Errorf("verify keys: %s: not PEM", k.KeyIdentifier)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("verify keys: %s: %w", k.KeyIdentifier, err)
		}
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("verify keys: %s: not an ECDSA key", k.KeyIdentifier)
		}
		out[k.KeyIdentifier] = ec
	}
	return out, nil
}
