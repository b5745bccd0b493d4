// Package stack starts and stops the gateway demo: keygate (the policy decision point), the demo
// content origin and nginx in front of both, each on 127.0.0.1, with every file they write under
// one private directory. The runner (`go run ./tests/gateway`) and the end-to-end tests share it.
//
// Processes are started in their own process group and stopped by their own PID (nginx by the PID
// in its pid file), never by name.
package stack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/tests/gateway/origin"
)

// ModulePath is the module the stack belongs to; FindRoot looks for its go.mod.
const ModulePath = "github.com/keygate/keygate"

// FindRoot walks up from dir to the directory whose go.mod declares ModulePath.
func FindRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if isModuleRoot(filepath.Join(d, "go.mod")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod of %s above %s", ModulePath, dir)
		}
	}
}

func isModuleRoot(goMod string) bool {
	f, err := os.Open(goMod)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) == 2 && fields[0] == "module" {
			return fields[1] == ModulePath
		}
	}
	return false
}

// Config says how to start the stack.
type Config struct {
	// Root is the module root: policies/, data/, cmd/keygate and tests/gateway/nginx.conf.tmpl.
	Root string
	// Dir is the private working directory; everything the stack writes goes below it.
	Dir string
	// Port is nginx's port; KeygatePort and OriginPort keygate's and the origin's. 0 picks free ones.
	Port, KeygatePort, OriginPort int
	// KeygateBinary is a built keygate; "" builds ./cmd/keygate into Dir.
	KeygateBinary string
	// NginxBinary is the nginx executable; "" means FindNginx.
	NginxBinary string
	// Policies is the policy directory keygate serves; "" copies Root/policies into Dir, so the
	// copy can be edited (and is hot-reloaded) without touching the repository.
	Policies string
	// Log receives the stack's and the origin's logs.
	Log *slog.Logger
	// KeygateArgs are extra `keygate serve` flags, such as --trusted-proxies.
	KeygateArgs []string
}

// Stack is a running gateway demo.
type Stack struct {
	// URL is nginx's base URL: send content API requests here with Host {service}.microcms.io,
	// management API requests with Host {service}.microcms-management.io.
	URL string
	// Keygate is keygate (its admin API and /v1/forward-auth at Keygate.URL).
	Keygate *Keygate
	// Nginx is the nginx master process.
	Nginx *Nginx
	// OriginURL is the demo origin's base URL.
	OriginURL string
	// Policies, Data and State are what keygate serves and writes.
	Policies, Data, State string
	// Dir is the working directory.
	Dir string

	origin *http.Server
	log    *slog.Logger
}

// Start builds keygate if needed, copies policies/ and data/ into cfg.Dir, and starts keygate, the
// origin and nginx. On error everything started so far is stopped again.
func Start(ctx context.Context, cfg Config) (s *Stack, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	log := cfg.Log.With("component", "stack")
	s = &Stack{Dir: cfg.Dir, log: log}
	defer func() {
		if err != nil {
			_ = s.Stop(context.WithoutCancel(ctx))
			s = nil
		}
	}()

	bin := cfg.KeygateBinary
	if bin == "" {
		log.Info("building keygate", "root", cfg.Root)
		if bin, err = BuildKeygate(ctx, cfg.Root, cfg.Dir); err != nil {
			return s, err
		}
	}
	s.Policies = cfg.Policies
	if s.Policies == "" {
		s.Policies = filepath.Join(cfg.Dir, "policies")
		if err = CopyDirs(cfg.Root, cfg.Dir, "policies"); err != nil {
			return s, err
		}
	}
	s.Data = filepath.Join(cfg.Dir, "data")
	if err = CopyDirs(cfg.Root, cfg.Dir, "data"); err != nil {
		return s, err
	}
	s.State = filepath.Join(cfg.Dir, "state", "state.json")

	if s.OriginURL, s.origin, err = startOrigin(cfg.OriginPort, cfg.Log); err != nil {
		return s, err
	}
	log.Info("origin started", "url", s.OriginURL)

	s.Keygate, err = StartKeygate(ctx, KeygateConfig{
		Binary: bin, Port: cfg.KeygatePort,
		Policies: s.Policies, Data: s.Data, State: s.State,
		LogPath: filepath.Join(cfg.Dir, "keygate.log"),
		Args:    cfg.KeygateArgs,
	})
	if err != nil {
		return s, err
	}
	log.Info("keygate started", "url", s.Keygate.URL, "pid", s.Keygate.PID())

	s.Nginx, err = StartNginx(ctx, NginxConfig{
		Binary:   cfg.NginxBinary,
		Template: filepath.Join(cfg.Root, "tests", "gateway", "nginx.conf.tmpl"),
		Port:     cfg.Port,
		Keygate:  s.Keygate.Addr,
		Origin:   strings.TrimPrefix(s.OriginURL, "http://"),
		Dir:      filepath.Join(cfg.Dir, "nginx"),
	})
	if err != nil {
		return s, err
	}
	s.URL = s.Nginx.URL
	log.Info("nginx started", "url", s.URL, "pid", s.Nginx.PID())
	return s, nil
}

// Stop stops nginx first (no new requests), then keygate, then the origin. It is safe to call on a
// partly started stack and more than once.
func (s *Stack) Stop(ctx context.Context) error {
	var errs []error
	if s.Nginx != nil {
		errs = append(errs, s.Nginx.Stop())
	}
	if s.Keygate != nil {
		errs = append(errs, s.Keygate.Stop())
	}
	if s.origin != nil {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := s.origin.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop origin: %w", err))
		}
	}
	return errors.Join(errs...)
}

// startOrigin serves the demo origin on 127.0.0.1:port (0: a free port).
func startOrigin(port int, log *slog.Logger) (string, *http.Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return "", nil, fmt.Errorf("origin listen: %w", err)
	}
	srv := &http.Server{Handler: origin.New(log), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("origin stopped", "error", err)
		}
	}()
	return "http://" + l.Addr().String(), srv, nil
}
