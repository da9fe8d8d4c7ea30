package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// child is a process the stack started: redis-server, the producer, the
// deliverer. Its output goes to the console under its name.
type child struct {
	name string
	cmd  *exec.Cmd
	out  io.Closer
	done chan struct{} // closed when the process has exited
	err  error         // its exit error; read after done
}

// startChild starts bin with args and env in its own process group, so that
// a Ctrl-C in the terminal reaches devstack only and devstack decides the
// order of shutdown.
func startChild(con *console, name, bin string, args, env []string) (*child, error) {
	out := con.Writer(name)
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		_ = out.Close()
		close(c.done)
	}()
	return c, nil
}

// Pid is the child's process id.
func (c *child) Pid() int { return c.cmd.Process.Pid }

// exited reports whether the child has exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// exitError describes an exit nobody asked for.
func (c *child) exitError() error {
	if c.err == nil {
		return fmt.Errorf("%s exited unexpectedly (status 0)", c.name)
	}
	return fmt.Errorf("%s exited unexpectedly: %w", c.name, c.err)
}

// errKilled means a child did not stop within the timeout after SIGTERM.
var errKilled = errors.New("did not stop in time and was killed")

// stop sends SIGTERM and waits up to timeout, then kills. It returns nil when
// the child exited cleanly on SIGTERM, errKilled when it had to be killed,
// and its exit error otherwise.
func (c *child) stop(timeout time.Duration) error {
	if c.exited() {
		return nil
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", c.name, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
		if c.err != nil {
			return fmt.Errorf("%s: %w", c.name, c.err)
		}
		return nil
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s %w (%s)", c.name, errKilled, timeout)
	}
}
