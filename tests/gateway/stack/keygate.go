package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, "./cmd/keygate")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/keygate: %w\n%s", err, b)
	}
	return out, nil
}

// KeygateConfig says how to run `keygate serve`.
type KeygateConfig struct {
	// Binary is the keygate executable.
	Binary string
	// Port to listen on (127.0.0.1); 0 picks a free one.
	Port int
	// Policies and Data are the directories keygate serves and watches.
	Policies, Data string
	// State is the key state file.
	State string
	// LogPath receives keygate's stdout and stderr.
	LogPath string
	// ReadyTimeout bounds the wait for GET /health to answer 200.
	ReadyTimeout time.Duration
}

// Keygate is a running `keygate serve`.
type Keygate struct {
	*Process
	// Addr is host:port, URL is http://Addr.
	Addr, URL string
	cfg       KeygateConfig
}

// StartKeygate runs `keygate serve` and waits until GET /health answers 200.
func StartKeygate(ctx context.Context, cfg KeygateConfig) (*Keygate, error) {
	if cfg.Port == 0 {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		cfg.Port = p
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	if err := os.MkdirAll(filepath.Dir(cfg.State), 0o755); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(cfg.Port)
	cmd := exec.Command(cfg.Binary, "serve",
		"--addr", addr, "--policies", cfg.Policies, "--data", cfg.Data, "--state", cfg.State)
	cmd.Env = withoutKeygateEnv(os.Environ())
	p, err := startProcess("keygate", cmd, cfg.LogPath)
	if err != nil {
		return nil, err
	}
	k := &Keygate{Process: p, Addr: addr, URL: "http://" + addr, cfg: cfg}
	if err := waitHTTP(ctx, p, k.URL+"/health", http.StatusOK, cfg.ReadyTimeout); err != nil {
		_ = k.Stop()
		return nil, fmt.Errorf("keygate not ready: %w", err)
	}
	return k, nil
}

// Stop ends keygate by its PID: SIGTERM (graceful shutdown), SIGKILL after 10 seconds.
func (k *Keygate) Stop() error {
	return k.Process.Stop(0, syscall.SIGTERM, 10*time.Second)
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

// withoutKeygateEnv drops KEYGATE_* variables so the flags the stack passes are the whole
// configuration, whatever the caller's shell exports.
func withoutKeygateEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "KEYGATE_") {
			out = append(out, kv)
		}
	}
	return out
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
		case <-time.After(100 * time.Millisecond):
		}
	}
}
