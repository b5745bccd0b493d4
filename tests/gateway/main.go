// Command gateway starts the whole gateway demo with one command: keygate deciding, the demo
// content origin serving, and nginx in front of both asking keygate about every request.
//
//	go run ./tests/gateway            # free ports, temp copies of policies/ and data/
//	go run ./tests/gateway -port 8080 # nginx on 127.0.0.1:8080
//
// It prints the base URL, example requests and the PIDs of itself and its children, then runs until
// Ctrl-C or SIGTERM (or until the process that started it exits, as a `go run` killed with SIGTERM
// does), when it stops nginx (by the PID in nginx's pid file), keygate (by its PID) and the origin,
// and removes its temporary directory (unless -keep).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/template"
	"time"

	"github.com/keygate/keygate/tests/gateway/stack"
)

func main() {
	ctx, stop := stack.NotifyContext(context.Background())
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

// run parses flags, starts the stack, prints how to use it and waits for ctx to end.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 0, "nginx port on 127.0.0.1 (0: a free port)")
	keygatePort := fs.Int("keygate-port", 0, "keygate port on 127.0.0.1 (0: a free port)")
	originPort := fs.Int("origin-port", 0, "demo origin port on 127.0.0.1 (0: a free port)")
	nginxBin := fs.String("nginx", "", "nginx binary (default: nginx on PATH, else /usr/sbin/nginx)")
	keygateBin := fs.String("keygate", "", "keygate binary (default: go build ./cmd/keygate)")
	policies := fs.String("policies", "", "policy directory keygate serves and watches (default: a temp copy of policies/)")
	keep := fs.Bool("keep", false, "keep the temporary directory (logs, rendered nginx.conf, state) after exit")
	verbose := fs.Bool("v", false, "log every origin request")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("flags: %w", err)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))

	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	root, err := stack.FindRoot(wd)
	if err != nil {
		return fmt.Errorf("run from inside the keygate checkout: %w", err)
	}
	dir, err := os.MkdirTemp("", "keygate-gateway-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}

	st, err := stack.Start(ctx, stack.Config{
		Root: root, Dir: dir,
		Port: *port, KeygatePort: *keygatePort, OriginPort: *originPort,
		KeygateBinary: *keygateBin, NginxBinary: *nginxBin, Policies: *policies,
		Log: log,
	})
	if err != nil {
		if errors.Is(err, stack.ErrNoNginx) {
			return fmt.Errorf("%w; or pass -nginx PATH", err)
		}
		return err
	}
	if err := printUsage(stdout, st); err != nil {
		_ = st.Stop(context.WithoutCancel(ctx))
		return err
	}

	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "\nstopping …")
	case <-st.Keygate.Exited():
		err = errors.New("keygate exited; see " + st.Keygate.LogPath())
	case <-st.Nginx.Exited():
		err = errors.New("nginx exited; see " + st.Nginx.ErrorLog)
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if stopErr := st.Stop(stopCtx); stopErr != nil {
		err = errors.Join(err, stopErr)
	}
	if *keep {
		fmt.Fprintln(stdout, "kept", dir)
	}
	return err
}

const usage = `keygate gateway demo is up.

  runner                pid {{.RunnerPID}}   (Ctrl-C or kill {{.RunnerPID}} stops everything below)
  nginx (the gateway)   {{.URL}}
  keygate               {{.Keygate.URL}}   (pid {{.Keygate.PID}}, log {{.Keygate.LogPath}})
  demo origin           {{.OriginURL}}
  nginx config          {{.Nginx.ConfigPath}}   (pid {{.Nginx.PID}}, logs {{.Nginx.ErrorLog}}, {{.Nginx.AccessLog}})
  policies (hot reload) {{.Policies}}

Content API requests carry Host {service}.microcms.io, management API requests
Host {service}.microcms-management.io. Try (a bash script; paste it whole, or line by line):

  # allowed: the demo key of team-demo may GET (published contents only)
  curl -i -H 'Host: team-demo.microcms.io' -H 'X-MICROCMS-API-KEY: team-demo-read-key' {{.URL}}/api/v1/blogs

  # 401 {"message":"X-MICROCMS-API-KEY header is invalid."}
  curl -i -H 'Host: team-demo.microcms.io' {{.URL}}/api/v1/blogs

  # 400 {"message":"POST is forbidden."}
  curl -i -H 'Host: team-demo.microcms.io' -H 'X-MICROCMS-API-KEY: team-demo-read-key' -H 'Content-Type: application/json' -d '{"name":"a"}' {{.URL}}/api/v1/contact

  # a single draft with its draftKey
  curl -i -H 'Host: team-demo.microcms.io' -H 'X-MICROCMS-API-KEY: team-demo-read-key' '{{.URL}}/api/v1/blogs/draft-1?draftKey=dk-draft-1'

  # 403 {"message":"Forbidden"}: the demo key has no management permission
  curl -i -H 'Host: team-demo.microcms-management.io' -H 'X-MICROCMS-API-KEY: team-demo-read-key' {{.URL}}/api/v2/media

  # create a key that may read drafts (as business-demo's admin), then list with it: drafts appear
  SECRET=$(curl -s -X POST -H 'Authorization: Bearer business-demo-admin-token' -H 'Content-Type: application/json' \
    -d '{"name":"preview","contentApi":{"default":{"get":true,"getAllDrafts":true}}}' \
    {{.Keygate.URL}}/v1/services/business-demo/keys | sed -n 's/.*"secret":"\([^"]*\)".*/\1/p')
  curl -i -H 'Host: business-demo.microcms.io' -H "X-MICROCMS-API-KEY: $SECRET" {{.URL}}/api/v1/blogs

The origin echoes what nginx forwarded from keygate as X-Echo-Keygate-* response headers.
Press Ctrl-C to stop.
`

// usageData is what the usage text shows: the stack and the runner's own PID.
type usageData struct {
	*stack.Stack
	RunnerPID int
}

func printUsage(w io.Writer, st *stack.Stack) error {
	t, err := template.New("usage").Parse(usage)
	if err != nil {
		return fmt.Errorf("usage template: %w", err)
	}
	if err := t.Execute(w, usageData{Stack: st, RunnerPID: os.Getpid()}); err != nil {
		return fmt.Errorf("print usage: %w", err)
	}
	return nil
}
