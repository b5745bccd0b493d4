package stack

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindRoot(t *testing.T) {
	root, err := FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "tests", "gateway", "nginx.conf.tmpl")); err != nil {
		t.Errorf("root %s has no tests/gateway/nginx.conf.tmpl: %v", root, err)
	}
	if _, err := FindRoot(t.TempDir()); err == nil {
		t.Error("FindRoot(temp dir) found a root")
	}
}

// TestNginxConfig renders the shipped template and has nginx check it (`nginx -t`), for both a
// root and an unprivileged start.
func TestNginxConfig(t *testing.T) {
	root, err := FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	tmpl := filepath.Join(root, "tests", "gateway", "nginx.conf.tmpl")
	tests := []struct {
		note string
		user string
	}{
		{note: "unprivileged"},
		{note: "as root with a worker user", user: "root"},
	}
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			dir := t.TempDir()
			conf, err := RenderNginxConfig(tmpl, NginxVars{
				Listen: "127.0.0.1:18080", Keygate: "127.0.0.1:18181", Origin: "127.0.0.1:18282",
				Dir: dir, User: tc.user,
			})
			if err != nil {
				t.Fatal(err)
			}
			s := string(conf)
			for _, want := range []string{
				"listen 127.0.0.1:18080 default_server;",
				"server 127.0.0.1:18181;",
				"server 127.0.0.1:18282;",
				`pid "` + dir + `/nginx.pid";`,
				"proxy_pass_request_body off;",
				`proxy_set_header Content-Length "";`,
				"proxy_set_header X-Original-Method $request_method;",
				"proxy_set_header X-Original-URI $request_uri;",
				"proxy_set_header X-Forwarded-Host $host;",
				"server_name *.microcms-management.io;",
				"proxy_set_header X-Keygate-Api management;",
			} {
				if !strings.Contains(s, want) {
					t.Errorf("rendered config lacks %q", want)
				}
			}
			if strings.Contains(s, "{{") || strings.Contains(s, "<no value>") {
				t.Errorf("rendered config has unrendered placeholders:\n%s", s)
			}
			if (tc.user != "") != strings.Contains(s, "user "+tc.user+";") {
				t.Errorf("user directive: want user %q in config", tc.user)
			}

			// As non-root nginx only warns about a user directive, so the
			// check runs either way (CI runs it as root).
			bin := RequireNginx(t)
			for _, d := range []string{"tmp/client_body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"} {
				if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, "nginx.conf")
			if err := os.WriteFile(path, conf, 0o644); err != nil {
				t.Fatal(err)
			}
			args := append(nginxArgs(bin, dir, path, filepath.Join(dir, "error.log")), "-t")
			if out, err := exec.CommandContext(t.Context(), bin, args...).CombinedOutput(); err != nil {
				t.Fatalf("nginx -t: %v\n%s", err, out)
			}
		})
	}
}
