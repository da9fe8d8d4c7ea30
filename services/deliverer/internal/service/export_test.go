package service

// SubscriptionsCurrent reports whether the deliverer's subscription lookups
// reflect KV revision rev (subcache.Memo.Current).
func (s *Service) SubscriptionsCurrent(rev uint64) bool { return s.memo.Current(rev) }
