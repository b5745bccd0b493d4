// Package runnertest checks that a demo runner (go run ./tests/gateway, ./tests/cluster) stops
// every process it started, however it is ended: SIGINT, SIGTERM, or the death of the process
// that started it (a `go run` killed with SIGTERM does not pass the signal on).
package runnertest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Ready is the line a runner prints once everything it starts is up.
const Ready = "Press Ctrl-C to stop."

// Build builds the runner package pkg (such as "./tests/gateway") of the module at root into a
// temporary directory and returns the binary.
func Build(t *testing.T, root, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// How is one way to end a runner.
type How string

const (
	// SIGINT is Ctrl-C, sent to the runner alone.
	SIGINT How = "SIGINT to the runner"
	// SIGTERM is a service manager's stop, sent to the runner.
	SIGTERM How = "SIGTERM to the runner"
	// ParentKilled kills the runner's parent with SIGKILL, as a killed `go run` would die.
	ParentKilled How = "the runner's parent killed"
)

// All lists every way.
var All = []How{SIGINT, SIGTERM, ParentKilled}

// Runner is a demo runner a test started.
type Runner struct {
	how       How
	cmd       *exec.Cmd // the runner, or the shell standing in for `go run`
	out       *syncBuffer
	exited    chan error
	runnerPID int
	pids      []int // the runner's and every child's it printed
}

// Start starts bin with args in dir (under a shell standing in for `go run` when how is
// ParentKilled, else directly), waits for Ready and takes every "pid N" the runner printed: its
// own ("runner pid N") and its children's.
func Start(t *testing.T, how How, dir, bin string, args ...string) *Runner {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc to tell a live process from a reaped one")
	}
	r := &Runner{how: how, out: &syncBuffer{}, exited: make(chan error, 1)}
	if how == ParentKilled {
		// The shell forks the runner (a background job) and waits: the runner's parent is the
		// shell, which then dies of SIGKILL without a word to its child.
		r.cmd = exec.Command("sh", "-c", `"$@" & wait`, "sh", bin)
		r.cmd.Args = append(r.cmd.Args, args...)
	} else {
		r.cmd = exec.Command(bin, args...)
	}
	r.cmd.Dir = dir
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	// Its own process group: the test's signals reach only what the test means them for.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.exited <- r.cmd.Wait() }()
	t.Cleanup(func() {
		// A failed test must not leave the stack behind either. Each child leads a process
		// group of its own (nginx's workers, PostgreSQL's backends are in it).
		for _, pid := range r.pids {
			if alive(pid) {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		_ = r.cmd.Process.Kill()
	})

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	for !strings.Contains(r.out.String(), Ready) {
		select {
		case err := <-r.exited:
			t.Fatalf("runner exited before it was ready: %v\n%s", err, r.out.String())
		case <-ctx.Done():
			t.Fatalf("runner not ready: %v\n%s", ctx.Err(), r.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	text := r.out.String()
	if m := regexp.MustCompile(`runner\s+pid (\d+)`).FindStringSubmatch(text); m != nil {
		r.runnerPID, _ = strconv.Atoi(m[1])
	}
	for _, m := range regexp.MustCompile(`\bpid (\d+)`).FindAllStringSubmatch(text, -1) {
		pid, _ := strconv.Atoi(m[1])
		r.pids = append(r.pids, pid)
	}
	if r.runnerPID == 0 || len(r.pids) < 3 {
		t.Fatalf("the runner printed no PIDs of its own and its children (want \"runner pid N\" and the children's \"pid N\"):\n%s", text)
	}
	for _, pid := range r.pids {
		if !alive(pid) {
			t.Fatalf("pid %d printed but not running:\n%s", pid, text)
		}
	}
	return r
}

// Output is what the runner printed so far.
func (r *Runner) Output() string { return r.out.String() }

// Script is the runner's "Try" section: the indented lines after the line starting with "Try",
// up to the next line that is not indented, as one bash script.
func (r *Runner) Script() string {
	var b strings.Builder
	in := false
	for _, line := range strings.Split(r.Output(), "\n") {
		switch {
		case strings.HasPrefix(line, "Try") || strings.Contains(line, ". Try"):
			in = true
		case in && line != "" && !strings.HasPrefix(line, "  "):
			return b.String()
		case in:
			b.WriteString(strings.TrimPrefix(line, "  ") + "\n")
		}
	}
	return b.String()
}

// Stop ends the runner the way it was started for and fails the test unless every process it
// printed is gone within timeout (and, when the test could see it, the runner exited 0).
func (r *Runner) Stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	switch r.how {
	case SIGINT:
		_ = syscall.Kill(r.runnerPID, syscall.SIGINT)
	case SIGTERM:
		_ = syscall.Kill(r.runnerPID, syscall.SIGTERM)
	case ParentKilled:
		_ = r.cmd.Process.Kill()
	}
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, pid := range r.pids {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still running after %s: %v\n%s", r.how, timeout, left, r.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.how == ParentKilled {
		return // the shell was killed; the runner's own exit status went to whoever reaped it
	}
	if err := <-r.exited; err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 0 {
			t.Errorf("runner exit: %v (want 0 after %s)\n%s", err, r.how, r.Output())
		}
	}
}

// alive reports whether pid is a process that has not exited (a zombie, exited but not yet
// reaped by whoever inherited it, counts as gone).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
