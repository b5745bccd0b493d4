// Package watch turns file-system changes under a directory tree into
// debounced change notifications.
//
// It watches directories, not files: editors save by writing in place, by
// writing a temporary file and renaming it over the original, or by deleting
// and re-creating; a Kubernetes ConfigMap mount swaps a "..data" symlink.
// Every one of those shows up as an event on a watched directory. New
// subdirectories, and directories reached through symlinks, are added as they
// appear. The root's parent is watched too, for events that name the root
// itself: a symlinked root re-pointed at another release, or a root deleted
// and re-created. A burst of events becomes one notification after a quiet
// period. Where inotify is unavailable, or accepted but silent (some network
// and FUSE file systems), a polling interval detects the same changes by
// fingerprinting the tree.
package watch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Options configure a Watcher.
type Options struct {
	// Debounce is the quiet period after the last event before onChange
	// runs. Zero means 150ms.
	Debounce time.Duration
	// MaxDelay bounds how long a continuous stream of events may postpone
	// onChange. Zero means 10 × Debounce.
	MaxDelay time.Duration
	// PollInterval, when positive, also fingerprints the tree at this
	// interval and notifies on a difference: the fallback for file systems
	// that deliver no inotify events.
	PollInterval time.Duration
	// PollOnly skips inotify altogether and relies on PollInterval alone:
	// for file systems where inotify accepts watches but never reports
	// changes made elsewhere (NFS, some container bind mounts). It requires a
	// positive PollInterval.
	PollOnly bool
	// Ignore reports base names whose events are irrelevant (editor swap and
	// backup files). Nil ignores nothing. Names starting with ".." are never
	// ignored: they are a Kubernetes ConfigMap's ..data symlink and the
	// timestamped directories it points at.
	Ignore func(base string) bool
	// Logger; slog.Default() when nil.
	Logger *slog.Logger
}

// Watcher watches one directory tree. Create it with New and start it with
// Run.
type Watcher struct {
	dir      string // as given, cleaned
	parent   string // filepath.Dir(dir): watched for events naming dir
	opts     Options
	onChange func(context.Context)
	log      *slog.Logger
}

// New returns a Watcher that calls onChange (never concurrently with itself)
// after changes under dir.
func New(dir string, opts Options, onChange func(context.Context)) *Watcher {
	if opts.Debounce <= 0 {
		opts.Debounce = 150 * time.Millisecond
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 10 * opts.Debounce
	}
	if opts.Ignore == nil {
		opts.Ignore = func(string) bool { return false }
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	dir = filepath.Clean(dir)
	return &Watcher{
		dir: dir, parent: filepath.Dir(dir), opts: opts, onChange: onChange,
		log: log.With("component", "watcher", "dir", dir),
	}
}

// Run watches until ctx is done. It returns an error only when neither
// inotify nor polling can watch the directory.
func (w *Watcher) Run(ctx context.Context) error {
	if w.opts.PollOnly && w.opts.PollInterval <= 0 {
		return fmt.Errorf("watch %s: poll-only watching needs a positive poll interval", w.dir)
	}
	var fw *fsnotify.Watcher
	if !w.opts.PollOnly {
		var err error
		if fw, err = fsnotify.NewWatcher(); err != nil {
			if w.opts.PollInterval <= 0 {
				return fmt.Errorf("watch %s: %w", w.dir, err)
			}
			w.log.Warn("inotify unavailable, polling only", "error", err.Error(), "interval", w.opts.PollInterval.String())
			fw = nil
		}
	}
	var events chan fsnotify.Event
	var errs chan error
	if fw != nil {
		defer fw.Close()
		if err := w.addTree(fw); err != nil {
			if w.opts.PollInterval <= 0 {
				return err
			}
			w.log.Warn("cannot watch tree, polling only", "error", err.Error())
		}
		if w.parent != w.dir {
			// Best effort: without it a swapped root symlink goes unnoticed
			// until polling or the next event inside the old tree.
			if err := fw.Add(w.parent); err != nil {
				w.log.Debug("cannot watch the root's parent", "error", err.Error())
			}
		}
		events, errs = fw.Events, fw.Errors
	}

	var poll <-chan time.Time
	var lastPrint [32]byte
	if w.opts.PollInterval > 0 {
		t := time.NewTicker(w.opts.PollInterval)
		defer t.Stop()
		poll = t.C
		lastPrint = w.fingerprint()
	}

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var pendingSince time.Time
	arm := func() {
		now := time.Now()
		if pendingSince.IsZero() {
			pendingSince = now
		}
		wait := w.opts.Debounce
		if rest := w.opts.MaxDelay - now.Sub(pendingSince); rest < wait {
			wait = max(rest, 0)
		}
		timer.Reset(wait)
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if !w.relevant(ev) {
				continue
			}
			if ev.Has(fsnotify.Create) {
				// A new directory (or a symlink swapped in): watch it and
				// everything below it.
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					_ = w.addTree(fw)
				}
			}
			arm()
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// An overflow loses events: reload to be sure.
			w.log.Warn("watch error", "error", err.Error())
			arm()
		case <-poll:
			if fp := w.fingerprint(); fp != lastPrint {
				lastPrint = fp
				arm()
			}
		case <-timer.C:
			pendingSince = time.Time{}
			if fw != nil {
				// Directories may have been replaced wholesale (a ConfigMap
				// swap): make sure every current directory is watched.
				_ = w.addTree(fw)
			}
			if poll != nil {
				lastPrint = w.fingerprint()
			}
			w.onChange(ctx)
		}
	}
}

// relevant reports whether an event may change what a reload reads.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	name := filepath.Clean(ev.Name)
	if filepath.Dir(name) == w.parent && name != w.dir {
		return false // a sibling of the root, seen through the parent watch
	}
	return !w.ignored(filepath.Base(name))
}

// ignored applies Options.Ignore, except to Kubernetes' "..data",
// "..data_tmp" and "..2026_…" entries, whose names would otherwise look like
// dot files.
func (w *Watcher) ignored(base string) bool {
	return !strings.HasPrefix(base, "..") && w.opts.Ignore(base)
}

// addTree watches the root and every directory below it, following
// symlinked directories. Adding an already watched path is a no-op in
// fsnotify.
func (w *Watcher) addTree(fw *fsnotify.Watcher) error {
	if err := fw.Add(w.dir); err != nil {
		return fmt.Errorf("watch %s: %w", w.dir, err)
	}
	var errs []error
	err := w.walk(func(p string, _ fs.FileInfo, isDir bool) {
		if isDir {
			if err := fw.Add(p); err != nil {
				errs = append(errs, err)
			}
		}
	})
	if err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// walk calls fn for every entry under the root (not the root itself) with
// its path below w.dir, its Lstat info and whether it is a directory or a
// symlink to one. It descends into every directory once, symlinked ones
// included, so a symlink cycle is not followed twice; directories whose
// names Ignore rejects (.git, say) are skipped whole. Entries that vanish
// while walking are skipped: the next event re-walks.
func (w *Watcher) walk(fn func(p string, lfi fs.FileInfo, isDir bool)) error {
	root, err := filepath.EvalSymlinks(w.dir)
	if err != nil {
		return fmt.Errorf("watch %s: %w", w.dir, err)
	}
	seen := map[string]bool{root: true}
	var visit func(dir string)
	visit = func(dir string) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			lfi, err := e.Info()
			if err != nil {
				continue
			}
			isDir := lfi.IsDir()
			if lfi.Mode()&fs.ModeSymlink != 0 {
				if fi, err := os.Stat(p); err == nil && fi.IsDir() {
					isDir = true
				}
			}
			if isDir && w.ignored(e.Name()) {
				continue
			}
			fn(p, lfi, isDir)
			if !isDir {
				continue
			}
			resolved, err := filepath.EvalSymlinks(p)
			if err != nil || seen[resolved] {
				continue
			}
			seen[resolved] = true
			visit(p)
		}
	}
	visit(w.dir)
	return nil
}

// fingerprint hashes the names, sizes and modification times of every file
// under the root (following symlinks) and every symlink's target, for
// polling.
func (w *Watcher) fingerprint() [32]byte {
	h := sha256.New()
	resolved, err := filepath.EvalSymlinks(w.dir)
	if err != nil {
		fmt.Fprintf(h, "error %v", err)
		return [32]byte(h.Sum(nil))
	}
	fmt.Fprintf(h, "root %s\n", resolved)
	_ = w.walk(func(p string, lfi fs.FileInfo, isDir bool) {
		if lfi.Mode()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			fmt.Fprintf(h, "%s -> %s\n", p, target)
		}
		if isDir || w.ignored(lfi.Name()) {
			return
		}
		fi, err := os.Stat(p)
		if err != nil {
			return
		}
		fmt.Fprintf(h, "%s %d %d\n", p, fi.Size(), fi.ModTime().UnixNano())
	})
	return [32]byte(h.Sum(nil))
}
