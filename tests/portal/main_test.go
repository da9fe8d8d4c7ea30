package portal

import (
	"os"
	"testing"

	"github.com/hookline/hookline/tests/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
