// Package crash kills a process that is writing keys with SIGKILL at random
// moments and checks that every acknowledged write survives and that nothing
// unacknowledged is half-present. The child is this test binary re-executed
// with KEYGATE_CRASH_CHILD set; it lives in its own package so that no
// TestMain of the end-to-end tests runs in it. refusals_test.go runs the real
// keygate binary on states that are not the one keygate acknowledged (a
// snapshot restored from an older backup, a missing file, a flipped bit) and
// checks that it refuses to start, saying what to do. upgrade_test.go runs it
// on state written by the previous release (format 2), which it upgrades in
// place with a backup.
package crash

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/keystore/local"
	"github.com/keygate/keygate/tests/gateway/stack"
)

const (
	childEnv = "KEYGATE_CRASH_CHILD"
	service  = "crash-demo"
	token    = "crash-admin-token"
	rounds   = 24
	maxKeys  = 20 // enterprise plan
)

// event is one line of the child's stdout: an intent before a write, an ack after it.
type event struct {
	Kind     string `json:"kind"` // "intent" or "ack"
	Seq      int    `json:"seq"`
	Op       string `json:"op"` // create, update, rotate, delete
	ID       string `json:"id,omitempty"`
	Name     string `json:"name,omitempty"`
	Secret   string `json:"secret,omitempty"` // test-only secrets, printed so the parent can check them
	Revision uint64 `json:"revision,omitempty"`
}

type keyState struct {
	name     string
	revision uint64
	secret   string // "" when unknown (a rotation that landed unacknowledged)
}

// storeOptions are the Store's options and the local driver's.
type storeOptions struct {
	keystore.Options
	localOptions
}

type localOptions = local.Options

func options(dir string) storeOptions {
	return storeOptions{
		Options: keystore.Options{
			DataDir:    filepath.Join(dir, "data"),
			Authorizer: &keystoretest.Authorizer{},
		},
		localOptions: local.Options{
			StatePath:    filepath.Join(dir, "state", "state.json"),
			CompactAfter: 7, // kills also land in the middle of compactions
		},
	}
}

// openStore opens a Store over the local state of o.
func openStore(ctx context.Context, o storeOptions) (*keystore.Store, error) {
	return keystore.New(ctx, local.New(o.localOptions), o.Options)
}

// build is the module root and the keygate binary the start-up refusal
// tests run.
var build stack.TestBuild

// TestMain runs the crash child instead of the tests when the test binary
// is re-executed by TestCrashRecovery; otherwise it builds keygate (or takes
// $KEYGATE_BIN) for the tests that run the real binary.
func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		crashChild(dir)
		os.Exit(0)
	}
	os.Exit(stack.MainWithKeygate(m, "crash", &build))
}

// crashChild performs key writes until it is killed, printing each
// acknowledged write.
func crashChild(dir string) {
	ctx := context.Background()
	s, err := openStore(ctx, options(dir))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(3)
	}
	keys, err := s.ListKeys(context.Background(), token, service)
	if err != nil {
		os.Exit(4)
	}
	var ids []string
	for _, k := range keys {
		ids = append(ids, k.ID)
	}
	out := bufio.NewWriter(os.Stdout)
	emit := func(e event) {
		b, _ := json.Marshal(e)
		out.Write(append(b, '\n'))
		out.Flush() // one write(2) per line
	}
	for seq := 1; ; seq++ {
		e := event{Kind: "intent", Seq: seq}
		switch r := rand.IntN(10); {
		case len(ids) == 0 || (r < 3 && len(ids) < maxKeys):
			e.Op = "create"
		case r < 6:
			e.Op = "update"
		case r < 8:
			e.Op = "rotate"
		default:
			e.Op = "delete"
		}
		if e.Op != "create" {
			e.ID = ids[rand.IntN(len(ids))]
		}
		if e.Op == "create" || e.Op == "update" {
			e.Name = fmt.Sprintf("n%d-%d", os.Getpid(), seq)
		}
		emit(e)
		spec := keystore.KeySpec{Name: e.Name, ContentAPI: keystore.ContentAPI{
			Default:    keystore.ContentPerms{Get: true},
			Individual: map[string]keystore.ContentPerms{fmt.Sprintf("ep%d", seq%5): {Get: true, Post: true}},
		}}
		e.Kind = "ack"
		switch e.Op {
		case "create":
			c, err := s.CreateKey(ctx, token, service, spec)
			must(err)
			e.ID, e.Secret, e.Revision = c.ID, c.Secret, c.Revision
			ids = append(ids, c.ID)
		case "update":
			u, err := s.UpdateKey(ctx, token, service, e.ID, spec)
			must(err)
			e.Revision = u.Revision
		case "rotate":
			r, err := s.RotateKey(ctx, token, service, e.ID)
			must(err)
			e.Secret, e.Revision = r.Secret, r.Revision
		case "delete":
			must(s.DeleteKey(ctx, token, service, e.ID))
			for i, id := range ids {
				if id == e.ID {
					ids = append(ids[:i], ids[i+1:]...)
					break
				}
			}
		}
		emit(e)
	}
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "child write:", err)
		os.Exit(5)
	}
}

func TestCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"services.json": `[{"id":"` + service + `","plan":"enterprise"}]`,
		"members.json":  `[{"id":"crash-admin","service":"` + service + `","role":"admin","token":"` + token + `"}]`,
	} {
		if err := os.WriteFile(filepath.Join(data, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	model := map[string]keyState{}
	acked, appliedPending, recoveredEntries := 0, 0, 0
	deadline := time.Now().Add(45 * time.Second)
	for round := range rounds {
		if time.Now().After(deadline) {
			t.Fatalf("only %d rounds in the time budget", round)
		}
		events := runAndKill(t, dir, time.Duration(30+rand.IntN(250))*time.Millisecond)
		var pending *event
		for i := range events {
			e := events[i]
			if e.Kind == "intent" {
				pending = &events[i]
				continue
			}
			acked++
			pending = nil
			applyAck(model, e)
		}
		applied, allowed, recovered := verify(t, dir, model, pending)
		recoveredEntries = recovered
		if applied {
			appliedPending++
		}
		// The audit trail survives kill -9 as the keys do: one allowed entry
		// per change that stands — acknowledged, or in flight and applied —
		// and only an in-flight write's entry may be a recovered one.
		if allowed != acked+appliedPending || recovered > appliedPending {
			t.Fatalf("round %d: %d allowed audit entries (%d recovered) for %d acknowledged and %d applied in-flight writes",
				round, allowed, recovered, acked, appliedPending)
		}
	}
	t.Logf("%d rounds, %d acknowledged writes, %d unacknowledged in-flight writes found applied (%d of them audited at start-up as recovered), %d keys at the end",
		rounds, acked, appliedPending, recoveredEntries, len(model))
	if acked < rounds {
		t.Fatalf("only %d acknowledged writes: the child hardly ran", acked)
	}

	t.Run("hand-truncated snapshot fails Open naming the file", func(t *testing.T) {
		opts := options(dir)
		b, err := os.ReadFile(opts.StatePath)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(opts.StatePath, b[:len(b)/2], 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = openStore(t.Context(), opts)
		if err == nil || !strings.Contains(err.Error(), opts.StatePath) {
			t.Fatalf("Open error = %v; want one naming %s", err, opts.StatePath)
		}
	})
}

// runAndKill starts the child, SIGKILLs it after d, and returns its complete lines.
func runAndKill(t *testing.T, dir string, d time.Duration) []event {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan []event, 1)
	go func() {
		var evs []event
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e event
			if json.Unmarshal(sc.Bytes(), &e) == nil { // a torn last line is not an ack
				evs = append(evs, e)
			}
		}
		lines <- evs
	}()
	time.Sleep(d)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	evs := <-lines
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v\n%s", err, stderr.String())
	}
	return evs
}

func applyAck(model map[string]keyState, e event) {
	switch e.Op {
	case "create":
		model[e.ID] = keyState{name: e.Name, revision: e.Revision, secret: e.Secret}
	case "update":
		k := model[e.ID]
		k.name, k.revision = e.Name, e.Revision
		model[e.ID] = k
	case "rotate":
		k := model[e.ID]
		k.secret, k.revision = e.Secret, e.Revision
		model[e.ID] = k
	case "delete":
		delete(model, e.ID)
	}
}

// verify opens the state after a kill and compares it with the acknowledged
// model. The one write in flight (pending) may be absent or fully applied,
// nothing in between. It updates model to what is stored and reports whether
// the pending write was applied.
func verify(t *testing.T, dir string, model map[string]keyState, pending *event) (applied bool, allowed, recovered int) {
	t.Helper()
	s, err := openStore(t.Context(), options(dir))
	if err != nil {
		t.Fatalf("state does not load after kill: %v", err)
	}
	defer s.Close()
	keys, err := s.ListKeys(t.Context(), token, service)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]keystore.Key{}
	for _, k := range keys {
		got[k.ID] = k
	}
	for id, want := range model {
		k, ok := got[id]
		touched := pending != nil && pending.ID == id
		switch {
		case !ok && touched && pending.Op == "delete":
			applied = true
			delete(model, id)
			continue
		case !ok:
			t.Fatalf("acknowledged key %s (%+v) lost", id, want)
		case touched && pending.Op == "update" && k.Revision == want.revision+1 && k.Name == pending.Name:
			applied = true
			want.name, want.revision = k.Name, k.Revision
		case touched && pending.Op == "rotate" && k.Revision == want.revision+1 && k.Name == want.name:
			applied = true
			if _, live := s.KeyBySecret(want.secret); want.secret != "" && live {
				t.Fatalf("key %s: rotated but the old secret still works", id)
			}
			want.revision, want.secret = k.Revision, ""
		case k.Name != want.name || k.Revision != want.revision:
			t.Fatalf("key %s: stored %q rev %d, acknowledged %q rev %d (pending %+v)", id, k.Name, k.Revision, want.name, want.revision, pending)
		}
		if want.secret != "" {
			if sk, ok := s.KeyBySecret(want.secret); !ok || sk.ID != id {
				t.Fatalf("key %s: acknowledged secret does not resolve", id)
			}
		}
		model[id] = want
	}
	for id, k := range got {
		if _, known := model[id]; known {
			continue
		}
		if pending == nil || pending.Op != "create" || k.Name != pending.Name || k.Revision != 1 {
			t.Fatalf("unacknowledged key %s (%q rev %d) present; pending %+v", id, k.Name, k.Revision, pending)
		}
		applied = true
		model[id] = keyState{name: k.Name, revision: k.Revision}
	}
	allowed, recovered = checkTrail(t, s, got)
	return applied, allowed, recovered
}

// checkTrail reads the whole audit trail and checks that its newest allowed
// entry of every key agrees with the stored key (a deleted key ends with a
// delete); it returns the number of allowed and of recovered entries.
func checkTrail(t *testing.T, s *keystore.Store, got map[string]keystore.Key) (allowed, recovered int) {
	t.Helper()
	last := map[string]keystore.AuditEntry{}
	q := keystore.AuditQuery{Limit: keystore.MaxAuditLimit}
	for {
		p, err := s.Audit(t.Context(), token, service, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Entries {
			if e.Outcome != keystore.OutcomeAllowed {
				continue
			}
			allowed++
			if e.Recovered {
				recovered++
			}
			if _, seen := last[e.KeyID]; !seen { // newest first
				last[e.KeyID] = e
			}
		}
		if p.Next == 0 {
			break
		}
		q.Before = p.Next
	}
	for id, e := range last {
		k, ok := got[id]
		switch {
		case e.Action == keystore.ActionDelete && ok:
			t.Fatalf("key %s is stored, but its last audit entry is a delete", id)
		case e.Action != keystore.ActionDelete && (!ok || e.After == nil || e.After.Revision != k.Revision || e.After.Name != k.Name):
			t.Fatalf("key %s: last audit entry %s %+v, stored %+v (present %v)", id, e.Action, e.After, k, ok)
		}
	}
	for id := range got {
		if _, ok := last[id]; !ok {
			t.Fatalf("stored key %s has no audit entry", id)
		}
	}
	return allowed, recovered
}
