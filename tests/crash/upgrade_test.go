package crash

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/keygate/keygate/tests/gateway/stack"
)

// v2Fixture is state written by the real keygate of the last release with
// state format 2 (see internal/keystore/local/testdata/v2/gen.sh), with the
// secrets each of its calls returned.
type v2Fixture struct {
	Seq  uint64 `json:"seq"`
	Live []struct {
		ID, Service, Name, Secret string
	} `json:"live"`
	DeadSecrets []struct{ Why, Secret string } `json:"deadSecrets"`
	DeletedIDs  []string                       `json:"deletedIDs"`
}

func fixtureDir() string {
	return filepath.Join(build.Root, "internal", "keystore", "local", "testdata", "v2")
}

// installV2 puts the format-2 fixture where w's keygate keeps its state.
func (w *work) installV2(t *testing.T) v2Fixture {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(w.state), 0o700); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(fixtureDir(), "state.json"), w.state)
	copyFile(t, filepath.Join(fixtureDir(), "state.json.log"), w.state+".log")
	b, err := os.ReadFile(filepath.Join(fixtureDir(), "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f v2Fixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// decide asks /v1/decide whether secret may read service's news.
func decide(t *testing.T, k *stack.Keygate, service, secret string) bool {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"service": service, "method": "GET", "path": "/api/v1/news", "apiKey": secret})
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

// listIDs lists the ids of service's keys as its admin.
func listIDs(t *testing.T, k *stack.Keygate, service string) []string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, k.URL+"/v1/services/"+service+"/keys", nil)
	req.Header.Set("Authorization", "Bearer "+service+"-admin-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l struct {
		Keys []struct {
			ID string `json:"id"`
		} `json:"keys"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("list %s keys: %d", service, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, key := range l.Keys {
		ids = append(ids, key.ID)
	}
	slices.Sort(ids)
	return ids
}

// assertFixtureServed checks keygate serves exactly the fixture's keys.
func assertFixtureServed(t *testing.T, k *stack.Keygate, f v2Fixture) {
	t.Helper()
	var want []string
	for _, key := range f.Live {
		want = append(want, key.ID)
		if !decide(t, k, key.Service, key.Secret) {
			t.Errorf("%s (%s): its secret is denied", key.ID, key.Name)
		}
	}
	slices.Sort(want)
	if got := listIDs(t, k, "business-demo"); !slices.Equal(got, want) {
		t.Errorf("business-demo keys %v, want %v", got, want)
	}
	if got := listIDs(t, k, "team-demo"); len(got) != 0 {
		t.Errorf("team-demo keys %v, want none (its seed key was deleted)", got)
	}
	for _, d := range f.DeadSecrets {
		for _, svc := range []string{"business-demo", "team-demo"} {
			if decide(t, k, svc, d.Secret) {
				t.Errorf("%s: its secret is allowed in %s", d.Why, svc)
			}
		}
	}
}

// TestUpgradeV2State runs the real keygate on state written by the real
// keygate of the previous release (format 2): it starts, serves the same
// keys (rotated-away and deleted secrets stay dead), leaves a format-4 pair
// and a byte-identical backup of the format-2 pair, says so at WARN, and
// the next start is an ordinary one. A format-2 keygate still running on
// the state (holding its lock file) makes it refuse instead.
func TestUpgradeV2State(t *testing.T) {
	t.Run("upgraded in place with a backup", func(t *testing.T) {
		w := newWork(t)
		f := w.installV2(t)
		k := w.start(t)
		assertFixtureServed(t, k, f)
		stop(t, k)
		out := readLog(filepath.Join(w.dir, fmt.Sprintf("keygate-%d.log", w.runs)))
		for line := range strings.Lines(out) {
			if strings.Contains(line, `"level":"WARN"`) {
				t.Logf("keygate: %s", strings.TrimSpace(line))
			}
		}
		for _, want := range []string{`"level":"WARN","msg":"state upgraded from format 2 to format 4`, `"backup":"` + w.state + `.v2-backup-`, `"log_backup":"` + w.state + `.log.v2-backup-`} {
			if !strings.Contains(out, want) {
				t.Errorf("keygate's log does not say %s:\n%s", want, out)
			}
		}

		snap, _ := os.ReadFile(w.state)
		log, _ := os.ReadFile(w.state + ".log")
		if !bytes.HasPrefix(snap, []byte(`{"format":"keygate-state","version":4,"seq":`+fmt.Sprint(f.Seq)+`,`)) || len(snap) < 12 || !bytes.Equal(snap[len(snap)-12:len(snap)-8], []byte{0xff, 0xff, 0xff, 0xff}) {
			t.Errorf("state.json is not a format-4 snapshot at seq %d (header line, end frame): %.80q…", f.Seq, snap)
		}
		if !bytes.HasPrefix(log, []byte("KGLOGv3\n")) || len(log) != 20 {
			t.Errorf("state.json.log is not an empty format-3 log: %q", log)
		}
		for _, name := range []string{"state.json", "state.json.log"} {
			backups, _ := filepath.Glob(filepath.Join(filepath.Dir(w.state), name+".v2-backup-*"))
			want, _ := os.ReadFile(filepath.Join(fixtureDir(), name))
			if len(backups) != 1 {
				t.Fatalf("%s backups: %v, want one", name, backups)
			}
			if got, _ := os.ReadFile(backups[0]); !bytes.Equal(got, want) {
				t.Errorf("%s is not a byte-identical copy of the format-2 %s", backups[0], name)
			}
		}

		k = w.start(t)
		assertFixtureServed(t, k, f)
		stop(t, k)
		if out := readLog(filepath.Join(w.dir, fmt.Sprintf("keygate-%d.log", w.runs))); strings.Contains(out, "format 2") {
			t.Errorf("the second start mentions format 2:\n%s", out)
		}
	})

	t.Run("refused while a format-2 keygate holds the state", func(t *testing.T) {
		w := newWork(t)
		w.installV2(t)
		lock, err := os.OpenFile(w.state+".lock", os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Close()
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			t.Fatal(err)
		}
		out := w.refused(t)
		t.Logf("keygate refused: %s", out)
		if !strings.Contains(out, "a keygate of the previous release (state format 2) is running on this state") {
			t.Errorf("keygate's refusal: %s", out)
		}
		if got, _ := os.ReadFile(w.state + ".log"); !bytes.HasPrefix(got, []byte("KGLOGv2\n")) {
			t.Error("the refused start changed the format-2 log")
		}
		if backups, _ := filepath.Glob(w.state + ".v2-backup-*"); len(backups) != 0 {
			t.Errorf("the refused start wrote backups: %v", backups)
		}
	})
}
