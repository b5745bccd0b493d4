package watch_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/watch"
)

// debounce is short so that the suite runs in seconds; quiet is how long a
// test waits to be sure that no further notification comes.
const (
	debounce = 40 * time.Millisecond
	quiet    = 12 * debounce
	deadline = 5 * time.Second
)

// fixture is a watcher running over a temporary tree, counting the
// notifications it delivers.
type fixture struct {
	root    string // the temporary directory holding everything
	watched string // the directory the watcher watches (root/tree unless set up otherwise)

	calls      atomic.Int64
	inside     atomic.Bool
	overlapped atomic.Bool
	notify     chan struct{}
	done       chan error
	cancel     context.CancelFunc
}

// layout prepares the tree before the watcher starts and returns the
// directory to watch.
type layout func(t *testing.T, root string) string

// plainTree is policies-like: tree/a.rego and tree/sub/b.rego.
func plainTree(t *testing.T, root string) string {
	t.Helper()
	dir := filepath.Join(root, "tree")
	write(t, filepath.Join(dir, "a.rego"), "package a\n")
	write(t, filepath.Join(dir, "sub", "b.rego"), "package b\n")
	return dir
}

// configMapTree is what the kubelet mounts for a ConfigMap: the files live
// in a timestamped directory that ..data points at, and each top-level
// entry is a symlink through ..data.
func configMapTree(t *testing.T, root string) string {
	t.Helper()
	dir := filepath.Join(root, "tree")
	write(t, filepath.Join(dir, "..2026_a", "content", "content.rego"), "package content\n# a\n")
	symlink(t, "..2026_a", filepath.Join(dir, "..data"))
	symlink(t, filepath.Join("..data", "content"), filepath.Join(dir, "content"))
	return dir
}

// externalLink is a tree with a symlink to a directory elsewhere
// (tree/lib -> ../shared/lib) that has subdirectories of its own.
func externalLink(t *testing.T, root string) string {
	t.Helper()
	dir := plainTree(t, root)
	write(t, filepath.Join(root, "shared", "lib", "deep", "x.rego"), "package x\n")
	symlink(t, filepath.Join("..", "shared", "lib"), filepath.Join(dir, "lib"))
	return dir
}

// symlinkedRoot is a release layout: the watched path is a symlink to one
// release directory.
func symlinkedRoot(t *testing.T, root string) string {
	t.Helper()
	write(t, filepath.Join(root, "releases", "v1", "a.rego"), "package a\n# v1\n")
	write(t, filepath.Join(root, "releases", "v2", "a.rego"), "package a\n# v2 is longer\n")
	current := filepath.Join(root, "current")
	symlink(t, filepath.Join("releases", "v1"), current)
	return current
}

// newFixture lays the tree out, starts a watcher with production's editor
// temp filter and waits until it demonstrably receives events.
func newFixture(t *testing.T, lay layout, opts watch.Options) *fixture {
	t.Helper()
	f := &fixture{root: t.TempDir(), notify: make(chan struct{}, 1000), done: make(chan error, 1)}
	f.watched = lay(t, f.root)
	opts.Debounce = debounce
	opts.Ignore = engine.IsEditorTemp
	opts.Logger = slog.New(slog.DiscardHandler)
	w := watch.New(f.watched, opts, func(context.Context) {
		if f.inside.Swap(true) {
			f.overlapped.Store(true)
		}
		f.calls.Add(1)
		f.inside.Store(false)
		f.notify <- struct{}{}
	})
	ctx, cancel := context.WithCancel(t.Context())
	f.cancel = cancel
	go func() { f.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-f.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(deadline):
			t.Error("Run did not return after cancel")
		}
		if f.overlapped.Load() {
			t.Error("onChange ran concurrently with itself")
		}
	})
	f.ready(t)
	return f
}

// ready proves the watcher is watching — Run sets its watches up
// asynchronously — by touching a probe file until a notification arrives,
// then removing it and starting the count from zero.
func (f *fixture) ready(t *testing.T) {
	t.Helper()
	probe := filepath.Join(f.watched, "probe.json")
	stop := time.Now().Add(deadline)
	for i := 0; f.calls.Load() == 0; i++ {
		if time.Now().After(stop) {
			t.Fatal("watcher never reported the probe file")
		}
		write(t, probe, fmt.Sprintf(`{"probe": %d}`, i))
		time.Sleep(debounce / 2)
	}
	if err := os.Remove(probe); err != nil {
		t.Fatal(err)
	}
	f.settle()
	f.calls.Store(0)
}

// settle waits until no notification has come for the quiet period.
func (f *fixture) settle() {
	for {
		select {
		case <-f.notify:
		case <-time.After(quiet):
			return
		}
	}
}

// waitCalls waits until at least n notifications have been delivered.
func (f *fixture) waitCalls(t *testing.T, n int64) {
	t.Helper()
	stop := time.After(deadline)
	for f.calls.Load() < n {
		select {
		case <-f.notify:
		case <-stop:
			t.Fatalf("got %d notifications, want at least %d", f.calls.Load(), n)
		}
	}
}

func TestWatcher(t *testing.T) {
	cases := []struct {
		note   string
		layout layout
		opts   watch.Options
		change func(t *testing.T, f *fixture)
		// The number of notifications wanted after the change, inclusive.
		min, max int64
	}{
		{
			note: "in-place write",
			change: func(t *testing.T, f *fixture) {
				write(t, filepath.Join(f.watched, "a.rego"), "package a\n# edited\n")
			},
			min: 1, max: 1,
		},
		{
			note: "write temp then rename over (VS Code, atomic savers)",
			change: func(t *testing.T, f *fixture) {
				tmp := filepath.Join(f.watched, "a.rego.tmp")
				write(t, tmp, "package a\n# saved\n")
				rename(t, tmp, filepath.Join(f.watched, "a.rego"))
			},
			min: 1, max: 1,
		},
		{
			note: "vim save: 4913 probe, backup by rename, new file, backup removed",
			change: func(t *testing.T, f *fixture) {
				a := filepath.Join(f.watched, "a.rego")
				write(t, filepath.Join(f.watched, "4913"), "")
				remove(t, filepath.Join(f.watched, "4913"))
				rename(t, a, a+"~")
				write(t, a, "package a\n# vim\n")
				remove(t, a+"~")
			},
			min: 1, max: 1,
		},
		{
			note: "delete then create",
			change: func(t *testing.T, f *fixture) {
				a := filepath.Join(f.watched, "a.rego")
				remove(t, a)
				write(t, a, "package a\n# recreated\n")
			},
			min: 1, max: 1,
		},
		{
			note: "new file",
			change: func(t *testing.T, f *fixture) {
				write(t, filepath.Join(f.watched, "c.rego"), "package c\n")
			},
			min: 1, max: 1,
		},
		{
			note: "removed file",
			change: func(t *testing.T, f *fixture) {
				remove(t, filepath.Join(f.watched, "sub", "b.rego"))
			},
			min: 1, max: 1,
		},
		{
			note: "write in an existing subdirectory",
			change: func(t *testing.T, f *fixture) {
				write(t, filepath.Join(f.watched, "sub", "b.rego"), "package b\n# edited\n")
			},
			min: 1, max: 1,
		},
		{
			note: "new nested subdirectory with a file, then an edit inside it",
			change: func(t *testing.T, f *fixture) {
				c := filepath.Join(f.watched, "new", "deeper", "c.rego")
				write(t, c, "package c\n")
				f.waitCalls(t, 1)
				f.settle()
				// Only a watch on new/deeper sees this one.
				write(t, c, "package c\n# edited\n")
			},
			min: 2, max: 2,
		},
		{
			note: "directory moved into the tree, then an edit inside it",
			change: func(t *testing.T, f *fixture) {
				outside := filepath.Join(f.root, "staging", "moved")
				write(t, filepath.Join(outside, "m.rego"), "package m\n")
				rename(t, outside, filepath.Join(f.watched, "moved"))
				f.waitCalls(t, 1)
				f.settle()
				write(t, filepath.Join(f.watched, "moved", "m.rego"), "package m\n# edited\n")
			},
			min: 2, max: 2,
		},
		{
			note:   "ConfigMap ..data symlink swap, twice",
			layout: configMapTree,
			change: func(t *testing.T, f *fixture) {
				swapConfigMap(t, f.watched, "..2026_a", "..2026_b")
				f.waitCalls(t, 1)
				f.settle()
				swapConfigMap(t, f.watched, "..2026_b", "..2026_c")
			},
			min: 2, max: 2,
		},
		{
			// The kubelet removes the old directory right after the swap, and
			// those removals alone would be noticed; the swap itself must be.
			note:   "ConfigMap ..data symlink swap, old version kept",
			layout: configMapTree,
			change: func(t *testing.T, f *fixture) {
				write(t, filepath.Join(f.watched, "..2026_b", "content", "content.rego"), "package content\n# b\n")
				symlink(t, "..2026_b", filepath.Join(f.watched, "..data_tmp"))
				rename(t, filepath.Join(f.watched, "..data_tmp"), filepath.Join(f.watched, "..data"))
			},
			min: 1, max: 1,
		},
		{
			note:   "ConfigMap: edit below the current ..data target",
			layout: configMapTree,
			change: func(t *testing.T, f *fixture) {
				write(t, filepath.Join(f.watched, "content", "content.rego"), "package content\n# edited\n")
			},
			min: 1, max: 1,
		},
		{
			note:   "symlinked root re-pointed at another release",
			layout: symlinkedRoot,
			change: func(t *testing.T, f *fixture) {
				tmp := filepath.Join(f.root, "current.new")
				symlink(t, filepath.Join("releases", "v2"), tmp)
				rename(t, tmp, f.watched)
				f.waitCalls(t, 1)
				f.settle()
				// The new release is watched now.
				write(t, filepath.Join(f.watched, "a.rego"), "package a\n# v2 edited\n")
			},
			min: 2, max: 2,
		},
		{
			note: "root deleted and re-created, then edited",
			change: func(t *testing.T, f *fixture) {
				if err := os.RemoveAll(f.watched); err != nil {
					t.Fatal(err)
				}
				write(t, filepath.Join(f.watched, "a.rego"), "package a\n# restored\n")
				f.waitCalls(t, 1)
				f.settle()
				write(t, filepath.Join(f.watched, "a.rego"), "package a\n# restored and edited\n")
			},
			min: 2, max: 3,
		},
		{
			note:   "edit two levels below a symlinked directory outside the tree",
			layout: externalLink,
			change: func(t *testing.T, f *fixture) {
				write(t, filepath.Join(f.root, "shared", "lib", "deep", "x.rego"), "package x\n# edited\n")
			},
			min: 1, max: 1,
		},
		{
			note: "writes inside an existing .git directory",
			layout: func(t *testing.T, root string) string {
				dir := plainTree(t, root)
				write(t, filepath.Join(dir, ".git", "objects", "HEAD"), "ref: refs/heads/main\n")
				return dir
			},
			change: func(t *testing.T, f *fixture) {
				write(t, filepath.Join(f.watched, ".git", "index"), "index")
				write(t, filepath.Join(f.watched, ".git", "objects", "ab", "cdef"), "object")
			},
			min: 0, max: 0,
		},
		{
			note: "editor temp and backup files alone",
			change: func(t *testing.T, f *fixture) {
				for _, name := range []string{"a.rego~", ".a.rego.swp", ".a.rego.swx", "4913", "a.rego.tmp", filepath.Join("sub", "x.tmp")} {
					p := filepath.Join(f.watched, name)
					write(t, p, "scratch")
					write(t, p, "scratch again")
					remove(t, p)
				}
			},
			min: 0, max: 0,
		},
		{
			note: "sibling of the root changes",
			change: func(t *testing.T, f *fixture) {
				write(t, filepath.Join(f.root, "elsewhere.rego"), "package elsewhere\n")
				write(t, filepath.Join(f.root, "tree2", "x.rego"), "package x\n")
			},
			min: 0, max: 0,
		},
		{
			note: "chmod only",
			change: func(t *testing.T, f *fixture) {
				if err := os.Chmod(filepath.Join(f.watched, "a.rego"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			min: 0, max: 0,
		},
		{
			note: "burst of 100 writes inside the debounce window",
			change: func(t *testing.T, f *fixture) {
				a := filepath.Join(f.watched, "a.rego")
				for i := range 100 {
					write(t, a, fmt.Sprintf("package a\n# %d\n", i))
				}
			},
			min: 1, max: 2,
		},
		{
			note: "poll only: in-place write seen by fingerprint",
			opts: watch.Options{PollOnly: true, PollInterval: 30 * time.Millisecond},
			change: func(t *testing.T, f *fixture) {
				write(t, filepath.Join(f.watched, "sub", "b.rego"), "package b\n# polled edit\n")
			},
			min: 1, max: 1,
		},
		{
			note: "poll only: new subdirectory with a file",
			opts: watch.Options{PollOnly: true, PollInterval: 30 * time.Millisecond},
			change: func(t *testing.T, f *fixture) {
				write(t, filepath.Join(f.watched, "new", "c.rego"), "package c\n")
			},
			min: 1, max: 1,
		},
		{
			note:   "poll only: ConfigMap swap",
			layout: configMapTree,
			opts:   watch.Options{PollOnly: true, PollInterval: 30 * time.Millisecond},
			change: func(t *testing.T, f *fixture) {
				swapConfigMap(t, f.watched, "..2026_a", "..2026_b")
			},
			min: 1, max: 1,
		},
		{
			note: "poll only: editor temp files alone",
			opts: watch.Options{PollOnly: true, PollInterval: 30 * time.Millisecond},
			change: func(t *testing.T, f *fixture) {
				write(t, filepath.Join(f.watched, "a.rego~"), "backup")
				write(t, filepath.Join(f.watched, "4913"), "")
			},
			min: 0, max: 0,
		},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			t.Parallel()
			lay := tc.layout
			if lay == nil {
				lay = plainTree
			}
			f := newFixture(t, lay, tc.opts)
			tc.change(t, f)
			if tc.min > 0 {
				f.waitCalls(t, tc.min)
			}
			f.settle()
			if got := f.calls.Load(); got < tc.min || got > tc.max {
				t.Errorf("got %d notifications, want %d..%d", got, tc.min, tc.max)
			}
		})
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	for _, opts := range []watch.Options{
		{},
		{PollInterval: 20 * time.Millisecond},
		{PollOnly: true, PollInterval: 20 * time.Millisecond},
	} {
		t.Run(fmt.Sprintf("poll=%s only=%t", opts.PollInterval, opts.PollOnly), func(t *testing.T) {
			f := newFixture(t, plainTree, opts)
			f.cancel()
			select {
			case err := <-f.done:
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				f.done <- nil // for the cleanup
			case <-time.After(deadline):
				t.Fatal("Run did not return after cancel")
			}
			write(t, filepath.Join(f.watched, "a.rego"), "package a\n# after stop\n")
			f.settle()
			if got := f.calls.Load(); got != 0 {
				t.Errorf("got %d notifications after cancel, want 0", got)
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	cases := []struct {
		note string
		dir  func(t *testing.T) string
		opts watch.Options
	}{
		{note: "missing directory without polling", dir: func(t *testing.T) string { return filepath.Join(t.TempDir(), "missing") }},
		{note: "poll only without an interval", dir: func(t *testing.T) string { return t.TempDir() }, opts: watch.Options{PollOnly: true}},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			tc.opts.Logger = slog.New(slog.DiscardHandler)
			w := watch.New(tc.dir(t), tc.opts, func(context.Context) { t.Error("onChange called") })
			if err := w.Run(t.Context()); err == nil {
				t.Error("Run returned nil, want an error")
			}
		})
	}
}

// TestLateDirectory starts a polling watcher on a directory that does not
// exist yet — a mount that appears later — and expects a notification once
// it does.
func TestLateDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "late")
	calls := make(chan struct{}, 10)
	w := watch.New(dir, watch.Options{
		Debounce: debounce, PollInterval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	}, func(context.Context) { calls <- struct{}{} })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	time.Sleep(3 * debounce)
	write(t, filepath.Join(dir, "a.rego"), "package a\n")
	select {
	case <-calls:
	case <-time.After(deadline):
		t.Fatal("no notification after the directory appeared")
	}
}

// swapConfigMap does what the kubelet's atomic writer does: write the new
// version into a fresh timestamped directory, point ..data_tmp at it,
// rename ..data_tmp over ..data, and remove the old directory.
func swapConfigMap(t *testing.T, dir, old, next string) {
	t.Helper()
	write(t, filepath.Join(dir, next, "content", "content.rego"), "package content\n# "+next+"\n")
	symlink(t, next, filepath.Join(dir, "..data_tmp"))
	rename(t, filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data"))
	if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func rename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
