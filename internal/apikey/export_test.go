package apikey

// UsageEntries is how many keys' counters the service holds in memory.
func (s *Service) UsageEntries() int {
	s.usageMu.Lock()
	defer s.usageMu.Unlock()
	return len(s.usage)
}

// CacheEntries is how many keys (and unknown IDs) the cache holds.
func (s *Service) CacheEntries() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.cache)
}

// SweepCache runs the cache sweep now.
func (s *Service) SweepCache() { s.sweepCache() }
