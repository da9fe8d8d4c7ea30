package sender

import "time"

// SetTokenClock makes s read the time of its token cache from now.
func SetTokenClock(s *Sender, now func() time.Time) { s.tokens.now = now }
