// Package watch turns file-system changes under a directory tree into
// debounced change notifications.
//
// It watches directories, not files: editors save by writing in place, by
// writing a temporary file and renaming it over the original, or by deleting
// and re-creating; a Kubernetes ConfigMap mount swaps a "..data" symlink.
// Every one of those shows up as an event on a watched directory. New
// subdirectories are added as they appear. A burst of events becomes one
// notification after a quiet period. Where inotify is unavailable (some
// network and FUSE file systems) a polling interval detects the same changes
// by fingerprinting the tree.
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
	// Ignore reports base names whose events are irrelevant (editor swap and
	// backup files). Nil ignores nothing.
	Ignore func(base string) bool
	// Logger; slog.Default() when nil.
	Logger *slog.Logger
}

// Watcher watches one directory tree. Create it with New and start it with
// Run.
type Watcher struct {
	dir      string
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
	return &Watcher{dir: dir, opts: opts, onChange: onChange, log: log.With("component", "watcher", "dir", dir)}
}

// Run watches until ctx is done. It returns an error only when neither
// inotify nor polling can watch the directory.
func (w *Watcher) Run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		if w.opts.PollInterval <= 0 {
			return fmt.Errorf("watch %s: %w", w.dir, err)
		}
		w.log.Warn("inotify unavailable, polling only", "error", err.Error(), "interval", w.opts.PollInterval)
		fw = nil
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
		events, errs = fw.Events, fw.Errors
	}

	var poll <-chan time.Time
	var lastPrint [32]byte
	if w.opts.PollInterval > 0 {
		t := time.NewTicker(w.opts.PollInterval)
		defer t.Stop()
		poll = t.C
		lastPrint = fingerprint(w.dir)
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
			if fp := fingerprint(w.dir); fp != lastPrint {
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
				lastPrint = fingerprint(w.dir)
			}
			w.onChange(ctx)
		}
	}
}

func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	return !w.opts.Ignore(filepath.Base(ev.Name))
}

// addTree watches the root and every directory below it, following a
// symlinked root. Adding an already watched path is a no-op in fsnotify.
func (w *Watcher) addTree(fw *fsnotify.Watcher) error {
	if err := fw.Add(w.dir); err != nil {
		return fmt.Errorf("watch %s: %w", w.dir, err)
	}
	root, err := filepath.EvalSymlinks(w.dir)
	if err != nil {
		return fmt.Errorf("watch %s: %w", w.dir, err)
	}
	var errs []error
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // vanished while walking; the next event re-walks
		}
		if d.Type()&fs.ModeSymlink != 0 {
			// ..data -> ..2026_…: watch the directory a symlink points at.
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				if err := fw.Add(p); err != nil {
					errs = append(errs, err)
				}
			}
			return nil
		}
		if d.IsDir() && p != root {
			if err := fw.Add(p); err != nil {
				errs = append(errs, err)
			}
		}
		return nil
	})
	return errors.Join(errs...)
}

// fingerprint hashes the names, sizes and modification times of every file
// under dir (following symlinks), for polling.
func fingerprint(dir string) [32]byte {
	h := sha256.New()
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		fmt.Fprintf(h, "error %v", err)
		return [32]byte(h.Sum(nil))
	}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			fmt.Fprintf(h, "%s -> %s\n", p, target)
		}
		if !fi.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			fmt.Fprintf(h, "%s %d %d\n", p, fi.Size(), fi.ModTime().UnixNano())
		}
		return nil
	})
	return [32]byte(h.Sum(nil))
}
