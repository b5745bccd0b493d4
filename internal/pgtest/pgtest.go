// Package pgtest runs a throwaway PostgreSQL cluster for tests and demos:
// initdb into a temporary directory, the postmaster on a free port of
// 127.0.0.1 with trust authentication, stopped by its PID. As root it runs
// as the postgres user (initdb refuses root). Without the PostgreSQL
// binaries a test is skipped, or fails under CI=true (CI installs them).
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoPostgres means no initdb/postgres binaries were found.
var ErrNoPostgres = errors.New("PostgreSQL binaries not found (Debian/Ubuntu: apt-get install -y postgresql)")

// FindBin returns the directory holding initdb and postgres: $PG_BIN, the
// newest /usr/lib/postgresql/*/bin, or the directory of initdb on PATH.
func FindBin() (string, error) {
	if d := os.Getenv("PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", ErrNoPostgres
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// TB is the part of testing.TB the package uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
}

// Require returns the binary directory, skipping the test when there is
// none (failing it under CI=true).
func Require(t TB) string {
	t.Helper()
	bin, err := FindBin()
	if err == nil {
		return bin
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and %v", err)
	}
	t.Skipf("skipping the PostgreSQL test: %v (with CI=true this is a failure)", err)
	return ""
}

// Cluster is a running (or stopped) throwaway PostgreSQL.
type Cluster struct {
	Bin, Dir, DataDir string
	Port              int
	cred              *syscall.Credential
	logPath           string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	dbs  int
}

// Start initdb's a cluster and starts it; the test's cleanup stops it and
// removes the directory.
func Start(t TB) *Cluster {
	t.Helper()
	bin := Require(t)
	c, err := New(bin)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Destroy(); err != nil {
			t.Logf("pgtest: %v", err)
		}
	})
	if err := c.Start(); err != nil {
		t.Fatalf("pgtest: %v\n%s", err, c.LogTail())
	}
	return c
}

// New initdb's a cluster under a new temporary directory (not started).
func New(bin string) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "keygate-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Bin: bin, Dir: dir, DataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "postgres.log")}
	fail := func(err error) (*Cluster, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fail(fmt.Errorf("running as root needs a postgres user (initdb refuses root): %w", err))
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chmod(dir, 0o755); err != nil {
			return fail(err)
		}
		for _, d := range []string{c.DataDir, filepath.Join(dir, "sock")} {
			if err := os.Mkdir(d, 0o700); err != nil {
				return fail(err)
			}
			if err := os.Chown(d, uid, gid); err != nil {
				return fail(err)
			}
		}
		f, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return fail(err)
		}
		_ = f.Close()
		if err := os.Chown(c.logPath, uid, gid); err != nil {
			return fail(err)
		}
	} else if err := os.Mkdir(filepath.Join(dir, "sock"), 0o700); err != nil {
		return fail(err)
	}
	cmd := exec.Command(filepath.Join(bin, "initdb"), "-D", c.DataDir, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %w\n%s", err, out))
	}
	port, err := freePort()
	if err != nil {
		return fail(err)
	}
	c.Port = port
	return c, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start starts the postmaster (again, after Stop) and waits until it accepts
// connections.
func (c *Cluster) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return errors.New("already running")
	}
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// fsync off: a test cluster is thrown away, and every stop is a clean
	// shutdown that writes everything out.
	cmd := exec.Command(filepath.Join(c.Bin, "postgres"), "-D", c.DataDir, "-p", strconv.Itoa(c.Port),
		"-k", filepath.Join(c.Dir, "sock"), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
		"-c", "max_connections=200", "-c", "shared_buffers=32MB")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(done)
	}()
	c.cmd, c.done = cmd, done
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		cancel()
		if err == nil {
			_ = conn.Close(context.Background())
			return nil
		}
		select {
		case <-done:
			c.cmd = nil
			return fmt.Errorf("postgres exited at start")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not accepting connections after 60s: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the postmaster by its PID: SIGINT (fast shutdown: clients are
// disconnected, everything is written), SIGKILL after 30 seconds.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return nil
	}
	cmd, done := c.cmd, c.done
	c.cmd = nil
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop postgres (pid %d): %w", cmd.Process.Pid, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(30 * time.Second):
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("postgres (pid %d) did not stop within 30s; killed", cmd.Process.Pid)
}

// PID is the postmaster's PID (0 when stopped).
func (c *Cluster) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Destroy stops the cluster and removes its directory.
func (c *Cluster) Destroy() error {
	err := c.Stop()
	return errors.Join(err, os.RemoveAll(c.Dir))
}

// URL is the connection string of database db.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

// NewDatabase creates a fresh database and returns its connection string.
func (c *Cluster) NewDatabase(ctx context.Context) (string, error) {
	_, url, err := c.NewNamedDatabase(ctx)
	return url, err
}

// NewNamedDatabase creates a fresh database and returns its name and
// connection string.
func (c *Cluster) NewNamedDatabase(ctx context.Context) (name, url string, err error) {
	c.mu.Lock()
	c.dbs++
	name = fmt.Sprintf("keygate_%d", c.dbs)
	c.mu.Unlock()
	if err := c.Exec(ctx, "postgres", "CREATE DATABASE "+name); err != nil {
		return "", "", err
	}
	return name, c.URL(name), nil
}

// Exec runs sql on database db on a connection of its own.
func (c *Cluster) Exec(ctx context.Context, db, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, c.URL(db))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("%s: %w", firstLine(sql), err)
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// LogTail is the end of the server log, for failure messages.
func (c *Cluster) LogTail() string {
	b, _ := os.ReadFile(c.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}
