// Package redisclock forwards to pkg/redisclock, the one home of the clock
// of the state Lua scripts keep in Redis. It stays only for the packages
// that still import it by this path (endpoint health's wiring); new code
// imports github.com/hookline/hookline/pkg/redisclock.
package redisclock

import "github.com/hookline/hookline/pkg/redisclock"

// Clock is pkg/redisclock's Clock: the nil Clock is Redis' own.
type Clock = redisclock.Clock
