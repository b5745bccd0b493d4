package local

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/keygate/keygate/internal/keystore"
)

// ReadState reads the state at path without changing it, for keygate
// migrate --from-state: the keys (sorted by id), the audit trail, and the
// IP restriction settings of its side file (nil when it has none). The
// single-node keygate must be stopped: the state directory's lock, held
// until unlock is called (after the import), proves that nothing writes the
// state while it is read and imported.
func ReadState(path string, logger *slog.Logger) (imp *keystore.Import, unlock func(), err error) {
	unlock, err = lockState(filepath.Dir(path))
	if err != nil {
		return nil, nil, fmt.Errorf("keystore: --from-state: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unlock()
		}
	}()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	j := newJournal(nil, path, 0, logger)
	keys, found, err := j.loadState()
	if err != nil {
		return nil, nil, fmt.Errorf("keystore: read state: %w", err)
	}
	if !found {
		return nil, nil, fmt.Errorf("keystore: no state at %s", path)
	}
	imp = &keystore.Import{Keys: keys.sorted(), IPFile: ipPath(path)} // in id order
	if imp.Trail, err = readTrail(path, logger); err != nil {
		return nil, nil, fmt.Errorf("keystore: read audit trail: %w", err)
	}
	// Nil when the state has no settings file: data/ seeds them as it
	// would have seeded the single node.
	if imp.IP, _, err = readIPFile(ipPath(path)); err != nil {
		return nil, nil, fmt.Errorf("keystore: read state: %w", err)
	}
	ok = true
	return imp, unlock, nil
}
