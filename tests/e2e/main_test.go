// Package e2e runs the real producer and deliverer binaries against a real
// nats-server and redis-server and checks what a receiver gets.
package e2e

import (
	"os"
	"testing"

	"github.com/hookline/hookline/tests/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
