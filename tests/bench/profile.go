package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A Profile is a CPU profile captured during a scenario. It is summarised
// (Summarise) only after the scenarios, so that `go tool pprof` or
// `perf report` never competes with what is being measured.
type Profile struct {
	Name string
	Path string
	// Kind is "pprof" (from /debug/pprof) or "perf" (perf record, for a
	// process without a pprof endpoint).
	Kind string
	Err  error
}

// CapturePprof fetches a CPU profile of seconds from base/debug/pprof/profile
// (base is http://host:port) and writes it to path.
func CapturePprof(ctx context.Context, base string, seconds int, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds)*time.Second+30*time.Second)
	defer cancel()
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, seconds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %d %s (is HOOKLINE_PPROF served?)", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// HasPprof reports whether base serves /debug/pprof/.
func HasPprof(ctx context.Context, base string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/debug/pprof/", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// CapturePerf samples pid with `perf record -g` for seconds into path.
func CapturePerf(ctx context.Context, pid, seconds int, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	bin, err := exec.LookPath("perf")
	if err != nil {
		return fmt.Errorf("no pprof endpoint and no perf on PATH (apt-get install linux-perf)")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds)*time.Second+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "record", "-F", "499", "-g", "-p", strconv.Itoa(pid),
		"-o", path, "--", "sleep", strconv.Itoa(seconds)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("perf record: %w\n%s", err, out)
	}
	return nil
}

// Summarise writes the profile's top functions next to it (path +
// ".top.txt": `go tool pprof -top`, or `perf report` flat and cumulative)
// and returns that file's path.
func (p Profile) Summarise(ctx context.Context) (string, error) {
	if p.Err != nil {
		return "", p.Err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var text []byte
	switch p.Kind {
	case "pprof":
		flat, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=45", p.Path).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go tool pprof -top: %w\n%s", err, flat)
		}
		cum, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=60", p.Path).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go tool pprof -top -cum: %w\n%s", err, cum)
		}
		text = append(append(flat, "\n---- cumulative ----\n"...), cum...)
	case "perf":
		flat, err := exec.CommandContext(ctx, "perf", "report", "-i", p.Path, "--stdio", "--no-children",
			"--sort", "symbol", "-g", "none", "--percent-limit", "0.7").CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("perf report: %w\n%s", err, flat)
		}
		cum, err := exec.CommandContext(ctx, "perf", "report", "-i", p.Path, "--stdio", "--children",
			"--sort", "symbol", "-g", "none", "--percent-limit", "3").CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("perf report --children: %w\n%s", err, cum)
		}
		text = append(append(flat, "\n---- cumulative (children) ----\n"...), cum...)
	default:
		return "", fmt.Errorf("unknown profile kind %q", p.Kind)
	}
	top := p.Path + ".top.txt"
	return top, os.WriteFile(top, text, 0o644)
}

// captureGoroutines writes base's goroutine dump (debug=1: stacks grouped
// with counts) to path, beside a CPU profile: where the workers wait.
func captureGoroutines(ctx context.Context, base, path string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/debug/pprof/goroutine?debug=1", nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		_ = os.WriteFile(path, b, 0o644)
	}
}
