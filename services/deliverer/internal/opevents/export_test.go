package opevents

import "time"

// SetClock fixes p's clock (the debounce window must not turn during a test).
func SetClock(p *Publisher, now func() time.Time) { p.now = now }
