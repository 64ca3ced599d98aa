package ratelimit

// Size exposes the number of buckets held, for the eviction tests.
func (l *Limiter) Size() (tenants, principals int) { return l.size() }
