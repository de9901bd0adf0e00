package crypt

import "time"

// SetCacheTTL changes how long the caches keep an entry, for a test.
func SetCacheTTL(d time.Duration) (restore func()) {
	old := cacheTTL
	cacheTTL = d
	return func() { cacheTTL = old }
}

// CacheSizes are how many data keys and opened values the caches hold.
func (s *Sealer) CacheSizes() (keys, values int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.cache), len(s.opened)
}
