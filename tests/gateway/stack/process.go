package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is a child process the stack started: keygate or nginx. It is stopped by its PID, never
// by name, so nothing else on the machine is touched.
type Process struct {
	name       string
	cmd        *exec.Cmd
	stdoutPath string
	logPath    string // stderr; the same file as stdoutPath unless they were asked apart
	done       chan struct{}
	waitErr    error
}

// startProcess starts cmd with stdout appended to stdoutPath and stderr to stderrPath ("" means
// stdoutPath too), in its own process group so a Ctrl-C in the terminal reaches only the runner,
// which then stops the children in order.
func startProcess(name string, cmd *exec.Cmd, stdoutPath, stderrPath string) (*Process, error) {
	if stderrPath == "" {
		stderrPath = stdoutPath
	}
	stdout, err := openLog(name, stdoutPath)
	if err != nil {
		return nil, err
	}
	files := []*os.File{stdout}
	stderr := stdout
	if stderrPath != stdoutPath {
		if stderr, err = openLog(name, stderrPath); err != nil {
			_ = stdout.Close()
			return nil, err
		}
		files = append(files, stderr)
	}
	closeAll := func() {
		for _, f := range files {
			_ = f.Close()
		}
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		closeAll()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, stdoutPath: stdoutPath, logPath: stderrPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		closeAll()
		close(p.done)
	}()
	return p, nil
}

// openLog opens path for appending a process's output.
func openLog(name, path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	return f, nil
}

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// LogPath is the file holding the process's stderr (its log), and its stdout too unless that was
// written apart (see StdoutPath).
func (p *Process) LogPath() string { return p.logPath }

// StdoutPath is the file holding the process's stdout.
func (p *Process) StdoutPath() string { return p.stdoutPath }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// ExitCode is the exit status of the exited process: -1 while it runs and when a signal ended it.
func (p *Process) ExitCode() int {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// Wait waits for the process to exit and returns its exit code (see ExitCode). If ctx ends first,
// the process is killed (by its PID) and Wait returns an error.
func (p *Process) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.done:
		return p.ExitCode(), nil
	case <-ctx.Done():
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return -1, fmt.Errorf("kill %s (pid %d): %w", p.name, p.PID(), err)
	}
	<-p.done
	return -1, fmt.Errorf("%s (pid %d) still running (%w); killed", p.name, p.PID(), context.Cause(ctx))
}

// Stop sends sig to pid (the process's own PID, or the PID it wrote to its pid file), waits up to
// grace for it to exit, then sends SIGKILL to the process it started. Stopping an exited process
// is not an error.
func (p *Process) Stop(pid int, sig syscall.Signal, grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if pid <= 0 {
		pid = p.PID()
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s (pid %d): %w", p.name, pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s (pid %d): %w", p.name, p.PID(), err)
	}
	<-p.done
	return fmt.Errorf("%s (pid %d) did not exit within %s of %s; killed", p.name, p.PID(), grace, sig)
}

// exitError describes an unexpected exit with the tail of the process's log.
func (p *Process) exitError() error {
	return fmt.Errorf("%s exited early (%v); last log lines:\n%s", p.name, p.waitErr, tail(p.logPath, 20))
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1. The port is free when this returns;
// another process could take it before it is used, which is acceptable for tests and demos.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// orFreePort is port, or a free port (see FreePort) when port is 0.
func orFreePort(port int) (int, error) {
	if port != 0 {
		return port, nil
	}
	return FreePort()
}

// readPID reads a pid file such as nginx's.
func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parse pid file %s: %w", path, err)
	}
	return pid, nil
}
