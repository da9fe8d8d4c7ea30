package bench

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports (sysconf(_SC_CLK_TCK) needs
// cgo to ask).
const clockTicks = 100

// CPUSeconds is the user+system CPU time a process has used so far, from
// /proc/<pid>/stat (fields 14 and 15).
func CPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime+stime from a /proc/<pid>/stat line. The command
// name (field 2) is in parentheses and may hold spaces, so fields are
// counted from the last ')'.
func parseStatCPU(b []byte) (float64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no command name")
	}
	// After ')' come field 3 (state) onwards; utime is field 14, stime 15.
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name", len(f))
	}
	ut, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat utime: %w", err)
	}
	st, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat stime: %w", err)
	}
	return float64(ut+st) / clockTicks, nil
}

// Memory is what /proc/<pid>/status says of a process's resident memory, in
// bytes.
type Memory struct {
	RSS  int64 // VmRSS: now
	Peak int64 // VmHWM: the high-water mark since start
}

// ReadMemory reads VmRSS and VmHWM of pid.
func ReadMemory(pid int) (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, err
	}
	return parseStatus(b)
}

func parseStatus(b []byte) (Memory, error) {
	var m Memory
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.Peak
		default:
			continue
		}
		f := strings.Fields(v) // "12345 kB"
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("status %s: %q", k, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("status %s: %w", k, err)
		}
		*dst = n << 10
	}
	if m.Peak == 0 {
		return m, fmt.Errorf("status: no VmHWM")
	}
	return m, sc.Err()
}

// Machine describes where a run happened.
type Machine struct {
	Cores    int    `json:"cores"`
	CPUModel string `json:"cpu_model"`
	OS       string `json:"os"`
	Kernel   string `json:"kernel,omitempty"`
	MemTotal string `json:"mem_total,omitempty"`
	// LoadStart and LoadEnd are /proc/loadavg (1, 5, 15 minutes) when the
	// run started and ended: numbers measured on a busy machine say so.
	LoadStart string `json:"load_start,omitempty"`
	LoadEnd   string `json:"load_end,omitempty"`
}

// LoadAvg is the first three fields of /proc/loadavg.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// ReadMachine reads /proc/cpuinfo, /proc/meminfo and the kernel release.
func ReadMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if m.CPUModel == "" {
		m.CPUModel = "unknown"
	}
	m.LoadStart = LoadAvg()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if line, _, ok := strings.Cut(string(b), "\n"); ok {
			if _, v, ok := strings.Cut(line, ":"); ok {
				m.MemTotal = strings.TrimSpace(v)
			}
		}
	}
	return m
}

// Versions are the Go toolchain and the modules that matter, as built into
// the binaries measured.
type Versions struct {
	Go      string            `json:"go"`
	Modules map[string]string `json:"modules"`
	// Binaries maps each binary to the Go version that built it.
	Binaries map[string]string `json:"binaries"`
}

// keyModules are the dependencies whose versions a reader of the numbers
// wants to know.
var keyModules = []string{
	"github.com/nats-io/nats-server/v2",
	"github.com/nats-io/nats.go",
	"github.com/redis/go-redis/v9",
	"go.uber.org/zap",
	"github.com/standard-webhooks/standard-webhooks/libraries",
	"google.golang.org/protobuf",
}

// ReadVersions reads the build information of the binaries (name → path).
func ReadVersions(bins map[string]string) Versions {
	v := Versions{Go: runtime.Version(), Modules: map[string]string{}, Binaries: map[string]string{}}
	want := map[string]bool{}
	for _, m := range keyModules {
		want[m] = true
	}
	for name, path := range bins {
		bi, err := buildinfo.ReadFile(path)
		if err != nil {
			v.Binaries[name] = "unknown: " + err.Error()
			continue
		}
		v.Binaries[name] = bi.GoVersion
		if want[bi.Main.Path] && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Modules[bi.Main.Path] = bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Replace != nil {
				d = d.Replace
			}
			if want[d.Path] {
				v.Modules[d.Path] = d.Version
			}
		}
	}
	return v
}
