package stack

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"text/template"
	"time"
)

// ErrNoNginx means no nginx binary was found on PATH or in /usr/sbin.
var ErrNoNginx = errors.New("nginx not found on PATH or at /usr/sbin/nginx (Debian/Ubuntu: apt-get install -y nginx-light)")

// FindNginx returns the path of the nginx binary: on PATH, else /usr/sbin/nginx (Debian does not
// put /usr/sbin on an unprivileged user's PATH).
func FindNginx() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", ErrNoNginx
}

// NginxVars fill in nginx.conf.tmpl.
type NginxVars struct {
	// Listen is the address nginx listens on, e.g. 127.0.0.1:8080.
	Listen string
	// Keygate and Origin are host:port of keygate and of the content origin.
	Keygate, Origin string
	// Dir holds the pid file, logs and temp directories.
	Dir string
	// User is the worker processes' user; set only when nginx starts as root.
	User string
}

// RenderNginxConfig renders the template file tmplPath with vars.
func RenderNginxConfig(tmplPath string, vars NginxVars) ([]byte, error) {
	tmpl, err := template.New(filepath.Base(tmplPath)).Option("missingkey=error").ParseFiles(tmplPath)
	if err != nil {
		return nil, fmt.Errorf("parse nginx template: %w", err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, vars); err != nil {
		return nil, fmt.Errorf("render nginx template: %w", err)
	}
	return buf.Bytes(), nil
}

// NginxConfig says how to run nginx.
type NginxConfig struct {
	// Binary is the nginx executable; "" means FindNginx.
	Binary string
	// Template is the path of nginx.conf.tmpl.
	Template string
	// Port to listen on (127.0.0.1); 0 picks a free one.
	Port int
	// Keygate and Origin are host:port of keygate and of the content origin.
	Keygate, Origin string
	// Dir is nginx's private directory (config, pid file, logs, temp files).
	Dir string
	// ReadyTimeout bounds the wait for nginx to answer; 0 means 15 seconds.
	ReadyTimeout time.Duration
}

// Nginx is a running nginx master process (daemon off, so the master is the process started).
type Nginx struct {
	*Process
	// Addr is host:port, URL is http://Addr.
	Addr, URL string
	// ConfigPath is the rendered configuration, PIDPath nginx's pid file.
	ConfigPath, PIDPath string
	// ErrorLog and AccessLog are nginx's logs.
	ErrorLog, AccessLog string
}

// TB is the part of testing.TB that RequireNginx uses (the stack does not import testing).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

// RequireNginx returns the nginx binary for a test. Without one the test fails under CI=true (CI
// installs nginx-light, so a missing binary is a broken CI image) and is skipped otherwise.
func RequireNginx(t TB) string {
	t.Helper()
	bin, err := FindNginx()
	if err == nil {
		return bin
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and %v", err)
	}
	t.Skipf("skipping the nginx test: %v (with CI=true this is a failure)", err)
	return ""
}

// StartNginx renders the configuration into cfg.Dir, checks it with `nginx -t`, starts nginx in
// the foreground and waits until it answers HTTP.
func StartNginx(ctx context.Context, cfg NginxConfig) (*Nginx, error) {
	if cfg.Binary == "" {
		b, err := FindNginx()
		if err != nil {
			return nil, err
		}
		cfg.Binary = b
	}
	var err error
	if cfg.Port, err = orFreePort(cfg.Port); err != nil {
		return nil, err
	}
	for _, d := range []string{"tmp/client_body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("create nginx dir: %w", err)
		}
	}
	addr := "127.0.0.1:" + strconv.Itoa(cfg.Port)
	vars := NginxVars{Listen: addr, Keygate: cfg.Keygate, Origin: cfg.Origin, Dir: cfg.Dir}
	if os.Geteuid() == 0 {
		// As root, nginx would switch its workers to "nobody", who cannot enter a private temp
		// directory; a throw-away local instance keeps them as the user who started it.
		if u, err := user.Current(); err == nil {
			vars.User = u.Username
		}
	}
	conf, err := RenderNginxConfig(cfg.Template, vars)
	if err != nil {
		return nil, err
	}
	n := &Nginx{
		Addr: addr, URL: "http://" + addr,
		ConfigPath: filepath.Join(cfg.Dir, "nginx.conf"),
		PIDPath:    filepath.Join(cfg.Dir, "nginx.pid"),
		ErrorLog:   filepath.Join(cfg.Dir, "error.log"),
		AccessLog:  filepath.Join(cfg.Dir, "access.log"),
	}
	if err := os.WriteFile(n.ConfigPath, conf, 0o644); err != nil {
		return nil, fmt.Errorf("write nginx.conf: %w", err)
	}
	args := nginxArgs(cfg.Binary, cfg.Dir, n.ConfigPath, n.ErrorLog)
	if out, err := exec.CommandContext(ctx, cfg.Binary, append(args, "-t", "-q")...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nginx -t %s: %w\n%s", n.ConfigPath, err, out)
	}
	p, err := startProcess("nginx", exec.Command(cfg.Binary, args...), filepath.Join(cfg.Dir, "nginx.stderr.log"), "")
	if err != nil {
		return nil, err
	}
	n.Process = p
	// Any HTTP answer means nginx is serving (without a service host keygate denies it).
	if err := waitHTTP(ctx, p, n.URL+"/", 0, cmp.Or(cfg.ReadyTimeout, 15*time.Second)); err != nil {
		_ = n.Stop()
		return nil, fmt.Errorf("nginx not ready: %w\nerror.log:\n%s", err, tail(n.ErrorLog, 20))
	}
	return n, nil
}

// Stop ends nginx by the PID it wrote to its pid file (falling back to the PID of the process
// started): SIGQUIT (graceful: finish in-flight requests), SIGKILL after 10 seconds.
func (n *Nginx) Stop() error {
	pid, err := readPID(n.PIDPath)
	if err != nil || pid != n.PID() {
		// With daemon off the pid file holds the master's PID, the process started; anything
		// else (no file yet, a stale file) is not trusted.
		pid = n.PID()
	}
	return n.Process.Stop(pid, syscall.SIGQUIT, 10*time.Second)
}

// nginxArgs builds the command line: -p sets the prefix for relative paths, -c the configuration,
// and -e (nginx ≥ 1.19.5) the error log used before the configuration is read, so nginx never
// touches the compiled-in /var/log/nginx.
func nginxArgs(binary, dir, conf, errorLog string) []string {
	args := []string{"-p", dir + "/", "-c", conf}
	if nginxHasErrorLogFlag(binary) {
		args = append(args, "-e", errorLog)
	}
	return args
}

// nginxHasErrorLogFlag reports whether `nginx -v` names a version with the -e flag (1.19.5+).
func nginxHasErrorLogFlag(binary string) bool {
	out, err := exec.Command(binary, "-v").CombinedOutput()
	if err != nil {
		return false
	}
	m := regexp.MustCompile(`nginx/(\d+)\.(\d+)\.(\d+)`).FindSubmatch(out)
	if m == nil {
		return false
	}
	v := [3]int{}
	for i := range v {
		v[i], _ = strconv.Atoi(string(m[i+1]))
	}
	return v[0] > 1 || (v[0] == 1 && (v[1] > 19 || (v[1] == 19 && v[2] >= 5)))
}
