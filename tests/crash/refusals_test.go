package crash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/tests/gateway/stack"
)

const (
	adminToken = "team-demo-admin-token"
	restore    = "restore state.json and state.json.log together from the same backup"
)

// work is a keygate work directory: copies of policies/ and data/, and state.
type work struct {
	dir, state string
	runs       int
}

func newWork(t *testing.T) *work {
	t.Helper()
	dir := t.TempDir()
	if err := stack.CopyDirs(build.Root, dir, "policies", "data"); err != nil {
		t.Fatal(err)
	}
	return &work{dir: dir, state: filepath.Join(dir, "state", "state.json")}
}

func (w *work) config() stack.KeygateConfig {
	w.runs++
	return stack.KeygateConfig{
		Binary: build.Binary, Dir: w.dir,
		Policies: filepath.Join(w.dir, "policies"), Data: filepath.Join(w.dir, "data"), State: w.state,
		LogPath:      filepath.Join(w.dir, fmt.Sprintf("keygate-%d.log", w.runs)),
		Args:         []string{"--decision-log", "off"},
		ReadyTimeout: 60 * time.Second,
	}
}

// start runs keygate until healthy; stop ends it gracefully.
func (w *work) start(t *testing.T) *stack.Keygate {
	t.Helper()
	cfg := w.config()
	k, err := stack.StartKeygate(t.Context(), cfg)
	if err != nil {
		t.Fatalf("start keygate: %v\n%s", err, readLog(cfg.LogPath))
	}
	t.Cleanup(func() { _ = k.Stop() })
	return k
}

func stop(t *testing.T, k *stack.Keygate) {
	t.Helper()
	if err := k.Stop(); err != nil || k.ExitCode() != 0 {
		t.Fatalf("stop keygate: %v, exit %d", err, k.ExitCode())
	}
}

// refused launches keygate, expects it to exit 1 within a minute, and
// returns what it wrote.
func (w *work) refused(t *testing.T) string {
	t.Helper()
	cfg := w.config()
	cfg.Port, _ = stack.FreePort()
	k, err := stack.LaunchKeygate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Stop() })
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	code, err := k.Wait(ctx)
	out := readLog(cfg.LogPath)
	if err != nil || code != 1 {
		t.Fatalf("keygate exit %d (%v), want a refusal with exit 1; output:\n%s", code, err, out)
	}
	return out
}

func readLog(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

type createdKey struct {
	Key struct {
		ID string `json:"id"`
	} `json:"key"`
	Secret string `json:"secret"`
}

// keyWrite posts to the key API as team-demo's admin and decodes the answer.
func keyWrite(t *testing.T, k *stack.Keygate, path string, body any, want int) createdKey {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, k.URL+"/v1/services/team-demo/keys"+path, rd)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
	}
	var c createdKey
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// allowed asks /v1/decide whether secret may read team-demo's news.
func allowed(t *testing.T, k *stack.Keygate, secret string) bool {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"service": "team-demo", "method": "GET", "path": "/api/v1/news", "apiKey": secret})
	resp, err := http.Post(k.URL+"/v1/decide", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		Allow bool `json:"allow"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d.Allow
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestStartupRefusals runs the real keygate on states that are not the one
// it acknowledged (a snapshot restored from a backup, a file deleted, a bit
// flipped): each must stop start-up with
// exit 1 and a message naming the file and what to do, instead of serving
// with keys lost or, worse, with a rotated-away secret working again.
//
// History: start (seeding: a snapshot at seq 0), create key A (seq 1), stop;
// a backup of both files is taken here. Start (folding the log: a snapshot
// at seq 1), rotate A (seq 2), stop. The state is now a snapshot at seq 1
// and a log based on seq 1 holding the rotation; restoring the backup's
// state.json alone would bring A's first secret back.
func TestStartupRefusals(t *testing.T) {
	w := newWork(t)
	k := w.start(t)
	a := keyWrite(t, k, "", map[string]any{"name": "a", "contentApi": map[string]any{"default": map[string]any{"get": true}}}, http.StatusCreated)
	stop(t, k)
	backup := filepath.Join(w.dir, "backup")
	if err := os.MkdirAll(backup, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"state.json", "state.json.log"} {
		copyFile(t, filepath.Join(filepath.Dir(w.state), name), filepath.Join(backup, name))
	}
	k = w.start(t)
	rotated := keyWrite(t, k, "/"+a.Key.ID+"/rotate", nil, http.StatusOK)
	if allowed(t, k, a.Secret) || !allowed(t, k, rotated.Secret) {
		t.Fatal("rotation did not take effect")
	}
	stop(t, k)
	current := filepath.Join(w.dir, "current")
	if err := os.CopyFS(current, os.DirFS(filepath.Dir(w.state))); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		note   string
		damage func(t *testing.T, snap, log string)
		says   []string
	}{
		{"state.json restored from the backup beside the current log", func(t *testing.T, snap, _ string) {
			copyFile(t, filepath.Join(backup, "state.json"), snap)
		}, []string{"state.json: seq: snapshot at seq 0 is older than state.json.log, which follows a snapshot at seq 1 (offset 8)", "rotated-away secrets", restore}},
		{"state.json deleted", func(t *testing.T, snap, _ string) { os.Remove(snap) },
			[]string{"state.json: missing, but state.json.log exists", restore}},
		{"state.json.log deleted", func(t *testing.T, _, log string) { os.Remove(log) },
			[]string{"state.json.log: missing beside state.json (seq 1)", restore}},
		{"a bit of a secret hash flipped", func(t *testing.T, snap, _ string) {
			// The seed key's secret hash, as the binary snapshot stores it.
			b, _ := os.ReadFile(snap)
			h := sha256.Sum256([]byte("team-demo-read-key"))
			i := strings.Index(string(b), string(h[:]))
			if i < 0 {
				t.Fatal("no secret hash of the seed key in state.json")
			}
			b[i+1] ^= 0x01
			os.WriteFile(snap, b, 0o600)
		}, []string{"state.json: offset ", "corrupt state snapshot: frame checksum mismatch", restore}},
	} {
		t.Run(tc.note, func(t *testing.T) {
			if err := os.RemoveAll(filepath.Dir(w.state)); err != nil {
				t.Fatal(err)
			}
			if err := os.CopyFS(filepath.Dir(w.state), os.DirFS(current)); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, w.state, w.state+".log")
			out := w.refused(t)
			t.Logf("keygate refused: %s", out)
			for _, s := range tc.says {
				if !strings.Contains(out, s) {
					t.Errorf("output does not say %q:\n%s", s, out)
				}
			}
		})
	}

	t.Run("the backup restored as a pair starts", func(t *testing.T) {
		if err := os.RemoveAll(filepath.Dir(w.state)); err != nil {
			t.Fatal(err)
		}
		if err := os.CopyFS(filepath.Dir(w.state), os.DirFS(backup)); err != nil {
			t.Fatal(err)
		}
		k := w.start(t)
		if !allowed(t, k, a.Secret) {
			t.Error("the backup's key does not work")
		}
		stop(t, k)
	})
}

// TestSecondKeygateRefused: a second keygate on the state directory of a
// running one exits 1 even after every file of the state was removed (the
// lock is on the directory, not on a file that can be deleted).
func TestSecondKeygateRefused(t *testing.T) {
	w := newWork(t)
	k := w.start(t)
	entries, err := os.ReadDir(filepath.Dir(w.state))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(filepath.Dir(w.state), e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	out := w.refused(t)
	if !strings.Contains(out, "is in use by another keygate process") {
		t.Errorf("second keygate: %s", out)
	}
	stop(t, k)
}
