package console

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/tests/gateway/stack"
)

// TestConsoleFlag: `keygate serve` serves the console by default;
// --console=false or KEYGATE_CONSOLE=false turn it off (404), a flag on
// the command line wins over the environment. No browser needed.
func TestConsoleFlag(t *testing.T) {
	for _, tc := range []struct {
		note string
		args []string
		env  []string
		want int
	}{
		{note: "default", want: 200},
		{note: "flag off", args: []string{"--console=false"}, want: 404},
		{note: "env off", env: []string{"KEYGATE_CONSOLE=false"}, want: 404},
		{note: "flag wins over env", args: []string{"--console=true"}, env: []string{"KEYGATE_CONSOLE=false"}, want: 200},
	} {
		t.Run(tc.note, func(t *testing.T) {
			dir := t.TempDir()
			if err := stack.CopyDirs(build.Root, dir, "policies", "data"); err != nil {
				t.Fatal(err)
			}
			kg, err := stack.StartKeygate(t.Context(), stack.KeygateConfig{
				Binary: build.Binary, Dir: dir,
				Policies: filepath.Join(dir, "policies"), Data: filepath.Join(dir, "data"),
				State: filepath.Join(dir, "state.json"), Args: append([]string{"--decision-log", "off"}, tc.args...),
				Env: tc.env, LogPath: filepath.Join(dir, "keygate.log"), ReadyTimeout: 30 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = kg.Stop() })
			for _, path := range []string{"/console/", "/console/app.js", "/console/services/team-demo/keys"} {
				res, err := http.Get(kg.URL + path)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode != tc.want {
					t.Errorf("%s: %d, want %d", path, res.StatusCode, tc.want)
				}
				if tc.want == 200 && (res.Header.Get("Content-Security-Policy") == "" || res.Header.Get("X-Content-Type-Options") != "nosniff") {
					t.Errorf("%s: headers %v", path, res.Header)
				}
			}
			// The API is there either way.
			req, _ := http.NewRequestWithContext(t.Context(), "GET", kg.URL+"/v1/me", nil)
			req.Header.Set("Authorization", "Bearer team-demo-admin-token")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Errorf("/v1/me: %d", res.StatusCode)
			}
		})
	}
}
