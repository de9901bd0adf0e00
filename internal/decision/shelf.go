package decision

import (
	"strconv"
	"sync"

	"github.com/keywayhq/keyway/internal/ratelimit"
)

// shelf keeps route limiters across config reloads. A reload builds its
// routes beside the serving ones; a new route with the same name, kind
// and limit as a running one takes the running one's limiter, counts and
// all, so that a reload does not give every client a fresh budget. The
// limiter stops when the last route holding it closes.
type shelf[K comparable] struct {
	mu   sync.Mutex
	held map[string]*shelved[K]
}

type shelved[K comparable] struct {
	lim  CloseLimiter[K]
	refs int
}

// take lends the limiter shelved under id, made by mk if there is none.
func (s *shelf[K]) take(id string, mk func() CloseLimiter[K]) CloseLimiter[K] {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held == nil {
		s.held = make(map[string]*shelved[K])
	}
	h := s.held[id]
	if h == nil {
		h = &shelved[K]{lim: mk()}
		s.held[id] = h
	}
	h.refs++
	return &lent[K]{CloseLimiter: h.lim, shelf: s, id: id}
}

func (s *shelf[K]) give(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.held[id]
	if h.refs--; h.refs == 0 {
		delete(s.held, id)
		h.lim.Close()
	}
}

// lent is a shelved limiter as one route holds it; Close gives it back
// once, however often it is called.
type lent[K comparable] struct {
	CloseLimiter[K]
	shelf *shelf[K]
	id    string
	once  sync.Once
}

func (l *lent[K]) Close() { l.once.Do(func() { l.shelf.give(l.id) }) }

// shelfID names a route's limiter: the same route name, instance of the
// name and limit (a changed limit starts afresh).
func shelfID(route string, instance int, l ratelimit.Limit) string {
	return route + "#" + strconv.Itoa(instance) + "|" + strconv.FormatInt(l.Count, 10) + "/" + l.Period.String() + "/" + strconv.FormatInt(l.Burst, 10)
}
