package stack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// BuildKeygate builds ./cmd/keygate of the module at root into dir and returns the binary's path.
func BuildKeygate(ctx context.Context, root, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(dir, "keygate")
	args := []string{"build", "-o", out}
	if raceEnabled {
		// Tests run with -race get a race-detecting server too, so the
		// end-to-end traffic hunts data races in keygate itself.
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, goBin, append(args, "./cmd/keygate")...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/keygate: %w\n%s", err, b)
	}
	return out, nil
}

// KeygateBinEnv names a keygate binary for the end-to-end tests to run instead of building one.
const KeygateBinEnv = "KEYGATE_BIN"

// TestBuild is what MainWithKeygate hands a test package: the module root (policies/, data/) and
// the keygate binary its tests run.
type TestBuild struct {
	Root, Binary string
}

// MainWithKeygate is the body of a TestMain for tests that start the real keygate: it finds the
// module root from the working directory, takes the binary $KEYGATE_BIN names or else builds
// ./cmd/keygate once into a temporary directory, stores both in *build, runs m, removes that
// directory and returns m's exit code for os.Exit. A failure is printed to stderr after name and
// returns 1.
//
//	var build stack.TestBuild
//
//	func TestMain(m *testing.M) { os.Exit(stack.MainWithKeygate(m, "e2e", &build)) }
func MainWithKeygate(m interface{ Run() int }, name string, build *TestBuild) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	root, err := FindRoot(".")
	if err != nil {
		return fail(err)
	}
	bin := os.Getenv(KeygateBinEnv)
	if bin != "" {
		// Tests may run keygate in another working directory.
		if bin, err = filepath.Abs(bin); err != nil {
			return fail(fmt.Errorf("%s: %w", KeygateBinEnv, err))
		}
	} else {
		dir, err := os.MkdirTemp("", "keygate-bin-")
		if err != nil {
			return fail(err)
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		bin, err = BuildKeygate(ctx, root, dir)
		cancel()
		if err != nil {
			return fail(err)
		}
	}
	*build = TestBuild{Root: root, Binary: bin}
	return m.Run()
}

// CopyDirs copies each named directory of root (such as "policies" and "data") to the same name
// below dir, so that tests can edit the copies without touching the repository.
func CopyDirs(root, dir string, names ...string) error {
	for _, name := range names {
		if err := os.CopyFS(filepath.Join(dir, name), os.DirFS(filepath.Join(root, name))); err != nil {
			return fmt.Errorf("copy %s: %w", name, err)
		}
	}
	return nil
}

// KeygateConfig says how to run `keygate serve`.
type KeygateConfig struct {
	// Binary is the keygate executable.
	Binary string
	// Port to listen on (127.0.0.1), passed as --addr. StartKeygate picks a free one for 0;
	// LaunchKeygate then passes no --addr (the environment or keygate's default decides).
	Port int
	// Policies and Data are the directories keygate serves and watches, State the key state file;
	// each is passed as its flag (--policies, --data, --state) when set.
	Policies, Data string
	State          string
	// Args follow those flags, such as --decision-log or --watch=false.
	Args []string
	// Env is added to the environment keygate inherits, from which every KEYGATE_* variable is
	// removed so that the flags are the whole configuration whatever the caller's shell exports;
	// Env may set KEYGATE_* variables again, and a later entry for a variable wins.
	Env []string
	// Dir is keygate's working directory; "" is the caller's.
	Dir string
	// LogPath receives keygate's stderr (its log), and its stdout too unless StdoutPath is set.
	// Both are appended to, so a restart on the same paths keeps the earlier output.
	LogPath string
	// StdoutPath, when set, receives stdout (where the decision log goes by default) apart.
	StdoutPath string
	// ReadyTimeout bounds StartKeygate's wait for GET /health to answer 200; 0 means 60 seconds.
	ReadyTimeout time.Duration
}

// Keygate is a running `keygate serve`.
type Keygate struct {
	*Process
	// Addr is host:port, URL is http://Addr; both are empty when no port was given.
	Addr, URL string
}

// StartKeygate runs `keygate serve` (see LaunchKeygate) on cfg.Port, a free port if 0, and waits
// until GET /health answers 200.
func StartKeygate(ctx context.Context, cfg KeygateConfig) (*Keygate, error) {
	var err error
	if cfg.Port, err = orFreePort(cfg.Port); err != nil {
		return nil, err
	}
	k, err := LaunchKeygate(cfg)
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, k.Process, k.URL+"/health", http.StatusOK, cmp.Or(cfg.ReadyTimeout, 60*time.Second)); err != nil {
		_ = k.Stop()
		return nil, fmt.Errorf("keygate not ready: %w", err)
	}
	return k, nil
}

// LaunchKeygate starts `keygate serve` with the flags of cfg's fields that are set, then cfg.Args,
// and returns without waiting for it to serve: for a keygate expected to fail, use Wait.
func LaunchKeygate(cfg KeygateConfig) (*Keygate, error) {
	args := []string{"serve"}
	k := &Keygate{}
	if cfg.Port != 0 {
		k.Addr = "127.0.0.1:" + strconv.Itoa(cfg.Port)
		k.URL = "http://" + k.Addr
		args = append(args, "--addr", k.Addr)
	}
	for _, f := range []struct{ flag, value string }{
		{"--policies", cfg.Policies}, {"--data", cfg.Data}, {"--state", cfg.State},
	} {
		if f.value != "" {
			args = append(args, f.flag, f.value)
		}
	}
	if cfg.State != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.State), 0o755); err != nil {
			return nil, fmt.Errorf("create state dir: %w", err)
		}
	}
	cmd := exec.Command(cfg.Binary, append(args, cfg.Args...)...)
	cmd.Env = Environ(cfg.Env...)
	cmd.Dir = cfg.Dir
	stdout := cfg.StdoutPath
	if stdout == "" {
		stdout = cfg.LogPath
	}
	p, err := startProcess("keygate", cmd, stdout, cfg.LogPath)
	if err != nil {
		return nil, err
	}
	k.Process = p
	return k, nil
}

// Stop ends keygate by its PID: SIGTERM (graceful shutdown), SIGKILL after 10 seconds. ExitCode
// then tells how keygate exited.
func (k *Keygate) Stop() error {
	return k.StopWith(syscall.SIGTERM)
}

// StopWith is Stop with another signal than SIGTERM, such as SIGINT.
func (k *Keygate) StopWith(sig syscall.Signal) error {
	return k.Process.Stop(0, sig, 10*time.Second)
}

// Health returns the body of GET /health.
func (k *Keygate) Health(ctx context.Context) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.URL+"/health", nil)
	if err != nil {
		return 0, nil, fmt.Errorf("health request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("GET /health: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("read /health: %w", err)
	}
	return resp.StatusCode, b, nil
}

// Environ is the environment a keygate the stack starts runs with: this process's environment
// without KEYGATE_* variables, so the flags it is given are the whole configuration whatever the
// caller's shell exports, followed by extra.
func Environ(extra ...string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "KEYGATE_") })
	return append(env, extra...)
}

// waitHTTP polls url until it answers want (0: any status), the process exits, ctx ends or
// timeout passes.
func waitHTTP(ctx context.Context, p *Process, url string, want int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	var last error = errors.New("no answer yet")
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("build request: %w", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if want == 0 || resp.StatusCode == want {
				return nil
			}
			last = fmt.Errorf("GET %s: status %d, want %d", url, resp.StatusCode, want)
		} else {
			last = err
		}
		select {
		case <-p.Exited():
			return p.exitError()
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %w; last log lines:\n%s", p.name, timeout, last, tail(p.logPath, 20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}
