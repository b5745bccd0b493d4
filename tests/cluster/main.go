// Command cluster starts keygate as three replicas sharing one key store on a
// throwaway PostgreSQL, with nginx load-balancing auth_request over them in
// front of the demo content origin:
//
//	go run ./tests/cluster           # free ports, everything under a temp dir
//	go run ./tests/cluster -check    # also run the demo's requests and report what they showed
//
// It prints curls that show a key created on one replica answering on all
// three and a delete taking effect everywhere, and the PIDs of itself and of
// everything it started, then runs until Ctrl-C or SIGTERM (or until the
// process that started it exits, as a `go run` killed with SIGTERM does),
// when it stops nginx, the replicas and PostgreSQL by their PIDs and removes
// the temp dir (unless -keep).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/tests/gateway/origin"
	"github.com/keygate/keygate/tests/gateway/stack"
)

func main() {
	ctx, stop := stack.NotifyContext(context.Background())
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

// demo is what the usage text shows.
type demo struct {
	URL       string
	Store     string
	StorePID  int
	RunnerPID int
	Replicas  []*stack.Keygate
	Nginx     *stack.Nginx
	Dir       string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("replicas", 3, "number of keygate replicas")
	keep := fs.Bool("keep", false, "keep the temporary directory (logs, nginx.conf, PostgreSQL data) after exit")
	check := fs.Bool("check", false, "run the demo's requests once and print what they showed")
	exit := fs.Bool("exit", false, "stop after start-up (and -check) instead of waiting for Ctrl-C")
	keygateBin := fs.String("keygate", "", "keygate binary (default: go build ./cmd/keygate)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("flags: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	root, err := stack.FindRoot(wd)
	if err != nil {
		return fmt.Errorf("run from inside the keygate checkout: %w", err)
	}
	nginxBin, err := stack.FindNginx()
	if err != nil {
		return err
	}
	pgBin, err := pgtest.FindBin()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "keygate-cluster-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	var stops []func() error
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			err = errors.Join(err, stops[i]())
		}
	}()

	log.Info("starting PostgreSQL (initdb into a temp dir)")
	pg, err := pgtest.New(pgBin)
	if err != nil {
		return err
	}
	stops = append(stops, pg.Destroy)
	if err := pg.Start(); err != nil {
		return fmt.Errorf("%w\n%s", err, pg.LogTail())
	}
	store := pg.URL("postgres")
	log.Info("PostgreSQL started", "pid", pg.PID())

	bin := *keygateBin
	if bin == "" {
		log.Info("building keygate")
		if bin, err = stack.BuildKeygate(ctx, root, dir); err != nil {
			return err
		}
	}
	if err := stack.CopyDirs(root, dir, "policies", "data"); err != nil {
		return err
	}
	d := &demo{Store: store, StorePID: pg.PID(), RunnerPID: os.Getpid(), Dir: dir}
	var addrs []string
	for i := range *n {
		name := fmt.Sprintf("replica-%c", 'a'+i)
		k, err := stack.StartKeygate(ctx, stack.KeygateConfig{
			Binary: bin, Dir: dir,
			Policies: filepath.Join(dir, "policies"), Data: filepath.Join(dir, "data"),
			Args:    []string{"--store", store, "--decision-log", filepath.Join(dir, name+".decisions.jsonl")},
			LogPath: filepath.Join(dir, name+".log"),
		})
		if err != nil {
			return err
		}
		stops = append(stops, k.Stop)
		d.Replicas = append(d.Replicas, k)
		addrs = append(addrs, k.Addr)
		log.Info("replica started", "name", name, "url", k.URL, "pid", k.PID())
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	osrv := &http.Server{Handler: origin.New(log), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = osrv.Serve(ln) }()
	stops = append(stops, func() error { return osrv.Close() })

	d.Nginx, err = stack.StartNginx(ctx, stack.NginxConfig{
		Binary: nginxBin, Template: filepath.Join(root, "tests", "gateway", "nginx.conf.tmpl"),
		// The template's upstream is `server {{.Keygate}};`: several servers
		// are one `;`-joined list (round robin over the replicas).
		Keygate: strings.Join(addrs, "; server "),
		Origin:  ln.Addr().String(), Dir: filepath.Join(dir, "nginx"),
	})
	if err != nil {
		return err
	}
	stops = append(stops, d.Nginx.Stop)
	d.URL = d.Nginx.URL

	// "dec" gives the template the last replica's index.
	t, err := template.New("usage").Funcs(template.FuncMap{"dec": func(i int) int { return i - 1 }}).Parse(usage)
	if err != nil {
		return err
	}
	if err := t.Execute(stdout, d); err != nil {
		return err
	}
	if *check {
		if err := runCheck(ctx, stdout, d); err != nil {
			return err
		}
	}
	if *exit {
		return nil
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "\nstopping …")
	if *keep {
		fmt.Fprintln(stdout, "kept", dir)
	}
	return nil
}

const usage = `keygate cluster demo is up: {{len .Replicas}} replicas on one PostgreSQL key store.

  runner                                 pid {{.RunnerPID}}   (Ctrl-C or kill {{.RunnerPID}} stops everything below)
  nginx (round robin over the replicas)  {{.URL}}   (pid {{.Nginx.PID}})
{{range $i, $r := .Replicas}}  replica {{$i}}                              {{$r.URL}}   (pid {{$r.PID}}, log {{$r.LogPath}})
{{end}}  PostgreSQL                             {{.Store}}   (pid {{.StorePID}})
  nginx config                           {{.Nginx.ConfigPath}}

Try (a bash script; paste it whole, or line by line):

  # create a key on replica 0 and keep its id and secret (the secret is shown once)
  R=$(curl -s -X POST -H 'Authorization: Bearer enterprise-demo-admin-token' -H 'Content-Type: application/json' \
    -d '{"name":"web","contentApi":{"default":{"get":true}}}' {{(index .Replicas 0).URL}}/v1/services/enterprise-demo/keys)
  ID=$(echo "$R" | sed -n 's/^{"key":{"id":"\([^"]*\)".*/\1/p'); SECRET=$(echo "$R" | sed -n 's/.*"secret":"\([^"]*\)".*/\1/p'); echo "created $ID"

  # every replica allows it at once (ask each directly) ...
  for r in{{range .Replicas}} {{.URL}}{{end}}; do
    curl -s -X POST $r/v1/decide -H 'Content-Type: application/json' \
      -d '{"service":"enterprise-demo","method":"GET","path":"/api/v1/blogs","apiKey":"'"$SECRET"'"}'; echo
  done
  # ... and through nginx, whichever replica it asks: 200
  curl -s -o /dev/null -w '%{http_code}\n' -H 'Host: enterprise-demo.microcms.io' -H "X-MICROCMS-API-KEY: $SECRET" {{.URL}}/api/v1/blogs

  # delete it on the last replica (204): every replica refuses it (401) within milliseconds
  curl -s -o /dev/null -w '%{http_code}\n' -X DELETE -H 'Authorization: Bearer enterprise-demo-admin-token' {{(index .Replicas (len .Replicas | dec)).URL}}/v1/services/enterprise-demo/keys/$ID
  sleep 0.2
  curl -s -o /dev/null -w '%{http_code}\n' -H 'Host: enterprise-demo.microcms.io' -H "X-MICROCMS-API-KEY: $SECRET" {{.URL}}/api/v1/blogs

  # each replica's view of the store: applied revision, head, staleness
  curl -s {{(index .Replicas 0).URL}}/health; echo

Press Ctrl-C to stop.
`

// runCheck does what the usage text shows and prints what it saw.
func runCheck(ctx context.Context, w io.Writer, d *demo) error {
	fmt.Fprintln(w, "\n-check: the demo's requests")
	first, last := d.Replicas[0], d.Replicas[len(d.Replicas)-1]
	var created struct {
		Key struct {
			ID string `json:"id"`
		} `json:"key"`
		Secret string `json:"secret"`
	}
	status, body, err := send(ctx, http.MethodPost, first.URL+"/v1/services/enterprise-demo/keys", "enterprise-demo-admin-token", "",
		`{"name":"web","contentApi":{"default":{"get":true}}}`)
	if err != nil || status != http.StatusCreated {
		return fmt.Errorf("create: %d %s %v", status, body, err)
	}
	if err := json.Unmarshal(body, &created); err != nil {
		return err
	}
	fmt.Fprintf(w, "  created %s on replica 0\n", created.Key.ID)
	decideAll := func(want bool) error {
		start := time.Now()
		for i, r := range d.Replicas {
			for {
				_, body, err := send(ctx, http.MethodPost, r.URL+"/v1/decide", "", "",
					`{"service":"enterprise-demo","method":"GET","path":"/api/v1/blogs","apiKey":"`+created.Secret+`"}`)
				if err != nil {
					return err
				}
				var dec struct {
					Allow  bool `json:"allow"`
					Status int  `json:"status"`
				}
				if err := json.Unmarshal(body, &dec); err != nil {
					return err
				}
				if dec.Allow == want {
					fmt.Fprintf(w, "  replica %d: allow=%v status %d (%s after the write)\n", i, dec.Allow, dec.Status, time.Since(start).Round(time.Microsecond))
					break
				}
				if time.Since(start) > 5*time.Second {
					return fmt.Errorf("replica %d still allow=%v after 5s", i, dec.Allow)
				}
				time.Sleep(time.Millisecond)
			}
		}
		return nil
	}
	if err := decideAll(true); err != nil {
		return err
	}
	for i := range len(d.Replicas) {
		status, _, err := send(ctx, http.MethodGet, d.URL+"/api/v1/blogs", "", created.Secret, "")
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  through nginx, request %d: %d\n", i, status)
	}
	status, body, err = send(ctx, http.MethodDelete, last.URL+"/v1/services/enterprise-demo/keys/"+created.Key.ID, "enterprise-demo-admin-token", "", "")
	if err != nil || status != http.StatusNoContent {
		return fmt.Errorf("delete: %d %s %v", status, body, err)
	}
	fmt.Fprintf(w, "  deleted it on replica %d\n", len(d.Replicas)-1)
	if err := decideAll(false); err != nil {
		return err
	}
	status, _, err = send(ctx, http.MethodGet, d.URL+"/api/v1/blogs", "", created.Secret, "")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  through nginx after the delete: %d\n", status)
	return nil
}

var client = &http.Client{Timeout: 10 * time.Second}

func send(ctx context.Context, method, url, token, apiKey, body string) (int, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if apiKey != "" {
		req.Host = "enterprise-demo.microcms.io"
		req.Header.Set("X-MICROCMS-API-KEY", apiKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}
