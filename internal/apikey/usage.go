package apikey

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

var outcomes = [...]Outcome{OutcomeOK, OutcomeInvalid, OutcomeForbidden, OutcomeRateLimited, OutcomeQuota}

// keyUsage holds one key's counters between flushes, and its quota state.
// It outlives cache entries: a reload of the key reuses it.
type keyUsage struct {
	id      string
	pending [len(outcomes)]atomic.Int64
	// okSeen is set by an OK request and taken by the flush, which records
	// its own time as the last use: a second's precision, and no clock
	// read on the hot path.
	okSeen atomic.Bool

	// looked is set when a load hands the counters out again (a cached
	// Verified holds them); activeAt is when flush last saw them used or
	// looked up (guarded by Service.usageMu).
	looked   atomic.Bool
	activeAt time.Time

	mu          sync.Mutex
	quotaLoaded bool
	quota       Quota
	periodStart time.Time // start of the quota period counted in used
	used        int64     // OK requests in the period (loaded from the store, then counted here)
}

func outcomeIndex(o Outcome) int {
	for i, x := range outcomes {
		if x == o {
			return i
		}
	}
	return 0
}

func (u *keyUsage) count(o Outcome) {
	u.pending[outcomeIndex(o)].Add(1)
	if o == OutcomeOK && !u.okSeen.Load() {
		u.okSeen.Store(true)
	}
}

// Record counts one request of v with outcome o, for the usage report.
func (s *Service) Record(v *Verified, o Outcome) {
	v.usage.count(o)
}

// periodStart returns the start of the quota period containing now (UTC).
func periodStart(p QuotaPeriod, now time.Time) time.Time {
	now = now.UTC()
	switch p {
	case QuotaDay:
		return time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	case QuotaMonth:
		return time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	case QuotaNone, QuotaTotal:
	}
	return time.Time{}
}

// QuotaCounter counts quota use across nodes.
type QuotaCounter interface {
	// Take takes one request from the quota of keyID for the period that
	// began at start (the zero time for a total quota), or reports false
	// when none is left. seed is what this node knows was used, for a
	// counter that does not exist yet (a new period, or a shared store
	// that lost its data); ttl is how long the period's counter must live
	// (0: for ever). An error means no answer could be had: the request
	// fails closed.
	Take(ctx context.Context, keyID string, start time.Time, ttl time.Duration, limit, seed int64) (bool, error)
}

// quotaTTL is how long a period's shared counter must outlive its start.
func quotaTTL(p QuotaPeriod) time.Duration {
	switch p {
	case QuotaDay:
		return 25 * time.Hour
	case QuotaMonth:
		return 32 * 24 * time.Hour
	case QuotaNone, QuotaTotal:
	}
	return 0
}

// ConsumeQuota takes one request from v's quota. It returns false, taking
// nothing, when the quota is spent: a credit never goes negative, even
// under concurrent requests on many nodes (with a QuotaCounter). An error
// means the shared count could not be had.
func (s *Service) ConsumeQuota(ctx context.Context, v *Verified) (bool, error) {
	q := v.Key.Quota
	if q.Period == QuotaNone {
		return true, nil
	}
	u := v.usage
	now := s.cfg.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	start := periodStart(q.Period, now)
	if start.After(u.periodStart) {
		u.periodStart, u.used = start, 0
	}
	if s.cfg.Quotas != nil {
		ok, err := s.cfg.Quotas.Take(ctx, v.Key.ID, start, quotaTTL(q.Period), q.Limit, u.used)
		if ok {
			u.used++
		}
		return ok, err
	}
	if u.used >= q.Limit {
		return false, nil
	}
	u.used++
	return true, nil
}

// usageFor returns the counters of k, creating them (and reading how much
// of its quota is already used) on first sight.
func (s *Service) usageFor(ctx context.Context, k *Key) (*keyUsage, error) {
	s.usageMu.Lock()
	u := s.usage[k.ID]
	if u == nil {
		u = &keyUsage{id: k.ID, activeAt: s.cfg.Now()}
		s.usage[k.ID] = u
	}
	s.usageMu.Unlock()
	u.looked.Store(true)

	u.mu.Lock()
	defer u.mu.Unlock()
	if u.quotaLoaded && k.Quota == u.quota {
		return u, nil
	}
	u.quota = k.Quota
	if k.Quota.Period == QuotaNone {
		u.quotaLoaded = true
		return u, nil
	}
	start := periodStart(k.Quota.Period, s.cfg.Now())
	n, err := s.cfg.Usage.CountUsage(ctx, k.ID, OutcomeOK, start)
	if err != nil {
		return nil, err
	}
	// Requests counted here but not yet flushed are in neither number twice:
	// the store has what was flushed, pending has the rest.
	u.periodStart, u.used, u.quotaLoaded = start, n+u.pending[0].Load(), true
	return u, nil
}

// forgetIdleAfter is how long a key's counters stay in memory, past
// StaleAfter, once nothing uses or looks them up: then flush drops them,
// so memory follows the keys in use, not every key ever used (a quota's
// count is read again from the store, where all of it is by then). A
// cached Verified older than StaleAfter is loaded again before use, which
// hands out new counters; only a request that took longer than this from
// its key check to its count could count into dropped ones, and the next
// flush still collects those.
const forgetIdleAfter = time.Minute

// flush writes the pending counters to the store. A failed write puts the
// counts back, so usage is delayed, never lost, while the process lives.
// Flushes run one at a time: a reader that flushes before it reads (List,
// UsageSince) must not find the counters already taken by a flush that has
// not committed yet, or it would show usage without its last-used time.
func (s *Service) flush(ctx context.Context) {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	now := s.cfg.Now().UTC()
	hour := now.Truncate(time.Hour)
	var deltas []UsageDelta
	last := map[string]time.Time{}
	type taken struct {
		u *keyUsage
		i int
		n int64
	}
	var took []taken
	collect := func(u *keyUsage) (active bool) {
		for i := range outcomes {
			if n := u.pending[i].Swap(0); n > 0 {
				deltas = append(deltas, UsageDelta{KeyID: u.id, Hour: hour, Outcome: outcomes[i], Count: n})
				took = append(took, taken{u, i, n})
				active = true
			}
		}
		if u.okSeen.Swap(false) {
			last[u.id] = now
			active = true
		}
		return active
	}
	s.usageMu.Lock()
	for _, u := range s.retired {
		collect(u)
	}
	s.retired = s.retired[:0]
	for id, u := range s.usage {
		used, looked := collect(u), u.looked.Swap(false)
		if used || looked {
			u.activeAt = now
		} else if now.Sub(u.activeAt) > s.cfg.StaleAfter+forgetIdleAfter {
			delete(s.usage, id)
			s.retired = append(s.retired, u)
		}
	}
	s.usageMu.Unlock()
	if len(deltas) == 0 && len(last) == 0 {
		return
	}
	if err := s.cfg.Usage.AddUsage(ctx, deltas, last); err != nil {
		for _, t := range took {
			t.u.pending[t.i].Add(t.n)
		}
		s.cfg.Logger.Warn("api keys: flush usage", slog.String("error", err.Error()))
	}
}

// Flush writes pending usage now (for tests and shutdown).
func (s *Service) Flush(ctx context.Context) { s.flush(ctx) }

// UsageSince returns a key's usage buckets from since on, including what is
// counted but not yet flushed.
func (s *Service) UsageSince(ctx context.Context, id string, since time.Time) ([]UsageRow, error) {
	s.flush(ctx)
	return s.cfg.Usage.UsageSince(ctx, normalizeID(id), since)
}
