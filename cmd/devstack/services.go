package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
)

// services are the two Hookline binaries the stack runs, in start order.
var services = []string{"producer", "deliverer"}

// privateCIDRs are the destinations local mode allows: the demo receiver on
// loopback and whatever a developer runs on a private network. Production
// leaves HOOKLINE_ALLOW_PRIVATE_CIDRS empty, so these are refused (SSRF).
const privateCIDRs = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"

// buildServices builds the producer and deliverer into <data>/bin in
// workspace mode, from the repository root.
func buildServices(ctx context.Context, cfg config, con *console, log *zap.Logger) (binDir string, err error) {
	binDir = filepath.Join(cfg.DataDir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", fmt.Errorf("bin dir: %w", err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go command is not on PATH: %w", err)
	}
	args := []string{"build", "-o", binDir + string(filepath.Separator)}
	for _, s := range services {
		args = append(args, "./services/"+s)
	}
	start := time.Now()
	log.Info("building the services", zap.Strings("services", services), zap.String("bin_dir", binDir))
	out := con.Writer("build")
	defer out.Close()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = cfg.Root
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	log.Info("built the services", zap.Float64("duration_s", time.Since(start).Seconds()))
	return binDir, nil
}

// serviceEnv is the environment of a service: the developer's own
// HOOKLINE_* settings win over the local defaults, but the addresses of the
// stack always win (a HOOKLINE_NATS_URL left in a shell must not point the
// services elsewhere, nor NATS/Redis credentials meant for another server).
func serviceEnv(base []string, natsURL, redisURL, httpAddr string) []string {
	env := []string{
		"HOOKLINE_LOG_FORMAT=console",
		"HOOKLINE_ALLOW_PRIVATE_CIDRS=" + privateCIDRs,
		// The embedded NATS has no users: the services create the topology
		// themselves (production runs them with "check" after an admin step).
		"HOOKLINE_TOPOLOGY=ensure",
	}
	for _, kv := range base {
		if strings.HasPrefix(kv, "HOOKLINE_NATS_") || strings.HasPrefix(kv, "HOOKLINE_REDIS_") || strings.HasPrefix(kv, "HOOKLINE_HTTP_ADDR=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"HOOKLINE_NATS_URL="+natsURL,
		"HOOKLINE_REDIS_URL="+redisURL,
		"HOOKLINE_HTTP_ADDR="+httpAddr,
	)
}
