package deliver

import "time"

// FreezeLines stops the clock of d's lines at now (before Run): a line
// refused admission is then never due again by its timer, so only a wake
// (a slot freed in this process) asks admission for its head again.
func FreezeLines(d *Deliverer, now time.Time) { d.lines.cfg.Now = func() time.Time { return now } }
