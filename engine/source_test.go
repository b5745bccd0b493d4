package engine

import (
	"os"
	"path/filepath"
	"testing"
)

// TestOnReload: every load attempt reaches the audit hook with the revision
// before and after and the result; a rejected edit keeps To at the serving
// revision.
func TestOnReload(t *testing.T) {
	dir := t.TempDir()
	write := func(rule string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "content.rego"), []byte("package content\n\n"+rule+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`decision := {"allow": true}`)
	var events []ReloadEvent
	eng, err := NewFromSource(t.Context(), DirSource(dir), Options{Entrypoints: []string{Content}, OnReload: func(ev ReloadEvent) { events = append(events, ev) }})
	if err != nil {
		t.Fatal(err)
	}
	first := eng.Revision()
	write(`decision := {"allow": false}`)
	if _, err := eng.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	second := eng.Revision()
	write(`decision := `)
	if _, err := eng.Reload(t.Context()); err == nil {
		t.Fatal("a broken edit loaded")
	}
	want := []struct{ from, to, result string }{{"", first, "ok"}, {first, second, "ok"}, {second, second, "error"}}
	if len(events) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(events), len(want), events)
	}
	for i, w := range want {
		ev := events[i]
		if ev.From != w.from || ev.To != w.to || ev.Result != w.result || ev.Source != "directory "+dir || (w.result == "error") != (ev.Error != "") {
			t.Errorf("event %d %+v, want %+v", i, ev, w)
		}
	}
}
