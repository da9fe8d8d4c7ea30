package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Binaries are the paths of the programs a test runs.
type Binaries struct {
	Dir        string
	Producer   string
	Deliverer  string
	Hookctl    string
	NATSServer string
}

var (
	buildOnce sync.Once
	built     Binaries
	buildErr  error
)

// Main runs the tests of a package and removes the binaries afterwards:
//
//	func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if built.Dir != "" && os.Getenv("HOOKLINE_TEST_BIN_DIR") == "" {
		_ = os.RemoveAll(built.Dir)
	}
	return code
}

// Build compiles the producer, deliverer, hookctl and nats-server once per
// test binary and returns their paths. HOOKLINE_TEST_REPO_ROOT, when set,
// names another checkout to build the services from;
// HOOKLINE_TEST_BIN_DIR names a directory of prebuilt binaries (producer,
// deliverer, hookctl, nats-server) to use instead of building. The services are built from this
// checkout (through go.work when it is in use); nats-server is the version
// the tests module requires (a tool dependency), so a test can kill -9 it
// and start it again on the same store.
func Build(tb testing.TB) Binaries {
	tb.Helper()
	buildOnce.Do(func() { built, buildErr = build() })
	if buildErr != nil {
		tb.Fatalf("build binaries: %v", buildErr)
	}
	return built
}

func build() (Binaries, error) {
	if dir := os.Getenv("HOOKLINE_TEST_BIN_DIR"); dir != "" {
		// Prebuilt binaries (kept: Main removes only what it built).
		b := binariesIn(dir)
		for _, p := range []string{b.Producer, b.Deliverer, b.Hookctl, b.NATSServer} {
			if _, err := os.Stat(p); err != nil {
				return Binaries{}, fmt.Errorf("HOOKLINE_TEST_BIN_DIR: %w", err)
			}
		}
		return b, nil
	}
	testsDir, err := testsModuleDir()
	if err != nil {
		return Binaries{}, err
	}
	root := filepath.Dir(testsDir)
	dir, err := os.MkdirTemp("", "hookline-bin-")
	if err != nil {
		return Binaries{}, err
	}
	b := binariesIn(dir)
	start := time.Now()
	services := []string{"./services/producer", "./services/deliverer", "./cmd/hookctl"}
	workDir := testsDir
	if other := os.Getenv("HOOKLINE_TEST_REPO_ROOT"); other != "" {
		// Build the services from another checkout, e.g. a `git worktree`
		// of a commit while this tree is being edited.
		root, workDir = other, filepath.Join(other, "tests")
	}
	if work := goEnv(workDir, "GOWORK"); work != "" && work != "off" {
		// One invocation from the workspace root builds all three in parallel.
		args := append([]string{"build", "-o", dir + string(os.PathSeparator)}, services...)
		if err := goCmd(filepath.Dir(work), args...); err != nil {
			return b, err
		}
	} else {
		// Without a workspace each module builds on its own.
		for _, s := range services {
			if err := goCmd(filepath.Join(root, s), "build", "-o", dir+string(os.PathSeparator), "."); err != nil {
				return b, err
			}
		}
	}
	if err := goCmd(testsDir, "build", "-o", b.NATSServer, "github.com/nats-io/nats-server/v2"); err != nil {
		return b, err
	}
	fmt.Fprintf(os.Stderr, "harness: built binaries in %s (%.1fs)\n", dir, time.Since(start).Seconds())
	return b, nil
}

func binariesIn(dir string) Binaries {
	return Binaries{
		Dir:        dir,
		Producer:   filepath.Join(dir, "producer"),
		Deliverer:  filepath.Join(dir, "deliverer"),
		Hookctl:    filepath.Join(dir, "hookctl"),
		NATSServer: filepath.Join(dir, "nats-server"),
	}
}

// testsModuleDir is the directory of the tests module (this file's parent's
// parent).
func testsModuleDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the harness source")
	}
	return filepath.Dir(filepath.Dir(file)), nil
}

func goEnv(dir, key string) string {
	cmd := exec.Command("go", "env", key)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func goCmd(dir string, args ...string) error {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s (in %s): %w\n%s", strings.Join(args, " "), dir, err, out)
	}
	return nil
}
