package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
)

// process is a server under test started by the harness.
type process struct {
	name string
	addr string
	cmd  *exec.Cmd
	log  string // its stderr/stdout file
	// what start was given, for restart
	dir, healthPath, bin string
	args                 []string
	ready                time.Duration // bound on the wait for healthPath
	// debugAddr serves keygate's /debug/pprof ("" when not started with it)
	debugAddr string
	// startProfiled is closed once the CPU profile of the first start is
	// saved (nil when none is taken): a second CPU profile cannot run
	// before it ends.
	startProfiled <-chan struct{}
	// startup is the time from exec to ready
	startup time.Duration
}

// defaultReady bounds the wait for a server that loads no keys.
const defaultReady = 5 * time.Minute

// readyTimeout bounds the wait for keygate to be ready with nKeys keys:
// seeding and restarts take time proportional to the keys (about 0.3 ms a
// key on a quiet machine before the compact index), with room for a loaded
// machine.
func readyTimeout(nKeys int) time.Duration {
	return defaultReady + time.Duration(nKeys)*2*time.Millisecond
}

// freeAddr returns a free 127.0.0.1 port. The port is released before the
// server binds it; on a quiet loopback that race is harmless.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// start runs bin with args, output to a log file in dir, and waits until
// GET healthPath answers 200.
func start(ctx context.Context, name, dir, addr, healthPath, bin string, args ...string) (*process, error) {
	return startWithin(ctx, defaultReady, name, dir, addr, healthPath, bin, args...)
}

// restart starts p's command again, as start did (its log is appended to),
// after p stopped.
func (p *process) restart(ctx context.Context) (*process, error) {
	np, err := startWithin(ctx, p.ready, p.name, p.dir, p.addr, p.healthPath, p.bin, p.args...)
	if np != nil {
		np.debugAddr = p.debugAddr
	}
	return np, err
}

// startWithin is start with a bound on the wait for healthPath.
func startWithin(ctx context.Context, ready time.Duration, name, dir, addr, healthPath, bin string, args ...string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "GIN_MODE=release")
	// Its own process group, so that stop ends what it started and only that.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	f.Close()
	t0 := time.Now()
	p := &process{name: name, addr: addr, cmd: cmd, log: logPath, dir: dir, healthPath: healthPath, bin: bin, args: args, ready: ready}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(ready)
	for {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("%s exited before it was ready (%v); see %s:\n%s", name, err, logPath, tail(logPath))
		default:
		}
		resp, err := http.Get("http://" + addr + healthPath)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				p.startup = time.Since(t0)
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s not ready after %v; see %s", name, ready, logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM to the process group it started, then SIGKILL after 5s.
func (p *process) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for syscall.Kill(pgid, 0) == nil {
			time.Sleep(20 * time.Millisecond)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// cpuTime reads the process's user+system CPU time from /proc.
func (p *process) cpuTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// Fields after the ")" that ends the command name; utime and stime are
	// fields 14 and 15, in clock ticks (100 Hz on Linux).
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// rssBytes is the process's resident set size (VmRSS).
func (p *process) rssBytes() int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// heapAlloc reads go_memstats_heap_alloc_bytes (live objects plus garbage not
// yet collected) from keygate's /metrics.
func heapAlloc(addr string) int64 { return goMetric(addr, "go_memstats_heap_alloc_bytes") }

// liveHeap forces two collections in keygate (heap profiles with gc=1 on
// its --debug-addr), saves the second profile to path when path is not
// empty, and returns go_memstats_heap_alloc_bytes just after: the live
// heap. Two, because a sync.Pool keeps its objects through one collection:
// encoding/json's encoder pool held a 192 MB snapshot buffer after a
// restart at 100k keys.
func liveHeap(p *process, path string) (int64, error) {
	if p.debugAddr == "" {
		return 0, errors.New("keygate has no --debug-addr")
	}
	if err := saveURL("http://"+p.debugAddr+"/debug/pprof/heap?gc=1", ""); err != nil {
		return 0, err
	}
	if err := saveURL("http://"+p.debugAddr+"/debug/pprof/heap?gc=1", path); err != nil {
		return 0, err
	}
	return heapAlloc(p.addr), nil
}

// saveURL GETs url and writes the body to path ("" discards it).
func saveURL(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var w io.Writer = io.Discard
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

func goMetric(addr, name string) int64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(rest, 64)
			return int64(f)
		}
	}
	return 0
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// buildKeygate builds ./cmd/keygate into dir (the harness runs from the
// module root, like `go run ./tests/bench`).
func buildKeygate(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "keygate")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/keygate")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/keygate: %w", err)
	}
	return bin, nil
}

// opaVersion is the OPA module version keygate's go.mod requires, as the
// go command resolves it (whether or not this program links OPA).
func opaVersion() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}",
		"github.com/open-policy-agent/opa").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m github.com/open-policy-agent/opa: %w", err)
	}
	v := strings.TrimSpace(string(out))
	if v == "" {
		return "", errors.New("go list found no version of github.com/open-policy-agent/opa")
	}
	return v, nil
}

// buildOPA installs the opa CLI of the module version keygate uses into
// dir, outside keygate's module (`go install …@version` ignores go.mod), so
// the main go.mod does not grow OPA's CLI dependencies.
func buildOPA(ctx context.Context, dir string) (string, error) {
	v, err := opaVersion()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/open-policy-agent/opa@"+v)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-buildvcs=false")
	cmd.Dir = os.TempDir()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go install opa@%s: %w", v, err)
	}
	return filepath.Join(dir, "opa"), nil
}

// baselineDecision mirrors keygate's decision answer; the baseline answers
// it as a constant.
type baselineDecision struct {
	DecisionID string `json:"decisionId"`
	Allow      bool   `json:"allow"`
	Status     int    `json:"status"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	Permission string `json:"permission"`
	Endpoint   string `json:"endpoint"`
	ContentID  string `json:"contentId"`
	KeyID      string `json:"keyId"`
	Visibility struct {
		Published bool   `json:"published"`
		Drafts    bool   `json:"drafts"`
		Closed    bool   `json:"closed"`
		DraftKey  bool   `json:"draftKey"`
		FilterOn  string `json:"filterOn"`
	} `json:"visibility"`
	PolicyRevision string `json:"policyRevision"`
}

// serveBaseline is target (b): gin.New(), one POST /v1/decide route that
// binds the same body as keygate and answers a constant decision. It runs
// in a child process of its own (the harness re-executes itself) so that,
// like keygate and opa, it does not share a Go runtime with the load
// generator.
func serveBaseline(addr string) error {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	type body struct {
		Service string            `json:"service"`
		API     string            `json:"api"`
		Method  string            `json:"method"`
		Path    string            `json:"path"`
		Query   map[string]string `json:"query"`
		APIKey  *string           `json:"apiKey"`
		Headers map[string]string `json:"headers"`
	}
	var answer baselineDecision
	answer.Allow, answer.Status, answer.Code, answer.Permission, answer.Endpoint = true, 200, "allowed", "get", "blogs"
	answer.Visibility.Published, answer.Visibility.FilterOn, answer.PolicyRevision = true, "published", "constant"
	r.POST("/v1/decide", func(c *gin.Context) {
		var in body
		if err := c.ShouldBindJSON(&in); err != nil {
			c.AbortWithStatus(http.StatusBadRequest)
			return
		}
		d := answer
		d.DecisionID = "0"
		c.JSON(http.StatusOK, &d)
	})
	r.GET("/health", func(c *gin.Context) { c.Status(http.StatusOK) })
	return http.ListenAndServe(addr, r)
}

// decisionOf posts body to url and returns allow and status of the
// decision (keygate's answer, or OPA's {"result": …}).
func decisionOf(url string, body []byte) (allow bool, status int, err error) {
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return false, 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return false, 0, fmt.Errorf("HTTP %d: %s", resp.StatusCode, raw)
	}
	var d struct {
		Allow  bool `json:"allow"`
		Status int  `json:"status"`
		Result *struct {
			Allow  bool `json:"allow"`
			Status int  `json:"status"`
		} `json:"result"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return false, 0, err
	}
	if d.Result != nil {
		return d.Result.Allow, d.Result.Status, nil
	}
	return d.Allow, d.Status, nil
}
