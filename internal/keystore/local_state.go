package keystore

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
)

// localState is a local state as keygate migrate --from-state reads it:
// the keys (sorted by id), the audit trail, and the IP restriction
// settings of its side file (nil when it has none).
type localState struct {
	keys  []*Key
	trail []AuditEntry
	ip    map[string]IPRestrictions
	// unlock releases the state directory's lock, held from the read to
	// the end of the import.
	unlock func()
}

// readLocalState reads the state at path without changing it. The
// single-node keygate must be stopped: its directory lock proves that
// nothing writes the state while it is read and imported.
func readLocalState(path string, logger *slog.Logger) (*localState, error) {
	unlock, err := lockState(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("keystore: --from-state: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unlock()
		}
	}()
	j := newJournal(nil, path, 0, logger)
	keys, found, err := j.loadState()
	if err != nil {
		return nil, fmt.Errorf("keystore: read state: %w", err)
	}
	if !found {
		return nil, fmt.Errorf("keystore: no state at %s", path)
	}
	st := &localState{keys: make([]*Key, 0, len(keys)), unlock: unlock}
	for _, k := range keys {
		st.keys = append(st.keys, k)
	}
	slices.SortFunc(st.keys, func(a, b *Key) int { return strings.Compare(a.ID, b.ID) })
	if st.trail, err = readTrail(path, logger); err != nil {
		return nil, fmt.Errorf("keystore: read audit trail: %w", err)
	}
	// Nil when the state has no settings file: data/ seeds them as it
	// would have seeded the single node.
	if st.ip, _, err = readIPFile(ipPath(path)); err != nil {
		return nil, fmt.Errorf("keystore: read state: %w", err)
	}
	ok = true
	return st, nil
}
