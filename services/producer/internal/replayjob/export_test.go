package replayjob

// CrashAfter makes the runner stop dead after replaying the entry at seq
// for which f is true, before its checkpoint: a process killed there.
func (m *Manager) CrashAfter(f func(seq uint64) bool) { m.crashAfter = f }
