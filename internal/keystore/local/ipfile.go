package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"

	"github.com/keygate/keygate/internal/keystore"
)

// The local driver's IP restriction file, <state>.ip-restrictions.json:
// every service's setting, replaced as a whole (temp file, fsync, rename,
// directory fsync) under the write lock, ending with a CRC-32C like the
// snapshot. See iprestrictions.go for what the settings are.

const (
	ipFileFormat  = "keygate-ip-restrictions"
	ipFileVersion = 1
)

// ipFile is the file as stored.
type ipFile struct {
	Format   string                             `json:"format"`
	Version  int                                `json:"version"`
	Services map[string]keystore.IPRestrictions `json:"services"`
	// Checksum is the CRC-32C of every byte before it, as the state
	// snapshot's: a bit flip that keeps the JSON valid (an address of an
	// allow-list) is refused, not believed.
	Checksum string `json:"checksum,omitempty"`
}

func ipPath(statePath string) string { return statePath + ".ip-restrictions.json" }

// loadIPRestrictions reads <state>.ip-restrictions.json, or seeds it from
// data/ip-restrictions.json (a map of service id to setting) when it does not
// exist. Entries are checked by the policy on every write, not here: a seed
// is trusted as data/ is, and a malformed entry never matches an address
// (data.network), so it can only deny.
func loadIPRestrictions(statePath, dataDir string) (map[string]*keystore.IPRestrictions, error) {
	path := ipPath(statePath)
	services, found, err := readIPFile(path)
	if err != nil {
		return nil, err
	}
	if !found {
		if services, err = keystore.ReadIPSeed(dataDir); err != nil {
			return nil, err
		}
	}
	return keystore.NormalizeIPSettings(path, services)
}

// readIPFile reads a <state>.ip-restrictions.json; found is false when it
// does not exist.
func readIPFile(path string) (services map[string]keystore.IPRestrictions, found bool, err error) {
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, false, nil
	case err != nil:
		return nil, false, &keystore.DataError{File: path, Reason: "cannot read", Err: err}
	}
	if body, sum, ok := splitChecksum(data); !ok || crc32.Checksum(body, castagnoli) != sum {
		return nil, false, &keystore.DataError{File: path, Field: "checksum", Reason: "checksum missing or mismatch: the file is damaged; restore it from the backup taken with state.json, or remove it to start without IP restrictions (every restriction is then lifted)"}
	}
	var f ipFile
	if err := keystore.DecodeStrict(path, data, &f); err != nil {
		return nil, false, err
	}
	if f.Format != ipFileFormat || f.Version != ipFileVersion {
		return nil, false, &keystore.DataError{File: path, Field: "format", Reason: fmt.Sprintf("not a %s v%d file", ipFileFormat, ipFileVersion)}
	}
	if f.Services == nil {
		f.Services = map[string]keystore.IPRestrictions{}
	}
	return f.Services, true, nil
}

// saveIPFile writes every service's setting to path durably, through the
// journal's file system (temp file, fsync, rename, directory fsync), with a
// checksum.
func saveIPFile(j *journal, path string, services map[string]*keystore.IPRestrictions) error {
	f := ipFile{Format: ipFileFormat, Version: ipFileVersion, Services: make(map[string]keystore.IPRestrictions, len(services))}
	for id, r := range services {
		f.Services[id] = *r
	}
	data, err := json.Marshal(&f)
	if err != nil {
		return fmt.Errorf("encode ip restrictions: %w", err)
	}
	body := data[:len(data)-1] // without the closing brace
	return j.replaceFile(path, fmt.Appendf(body, "%s%08x\"}", trailerHead, crc32.Checksum(body, castagnoli)))
}
