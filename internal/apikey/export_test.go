package apikey

// UsageEntries is how many keys' counters the service holds in memory.
func (s *Service) UsageEntries() int {
	s.usageMu.Lock()
	defer s.usageMu.Unlock()
	return len(s.usage)
}
