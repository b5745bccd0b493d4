package keystore

// IndexOf returns s's index, for benchmarks that load it directly.
func IndexOf(s *Store) Index { return s.index }

// LoadSeedKeysBaseline is the loader before streaming, for benchmarks.
var LoadSeedKeysBaseline = loadSeedKeysBaseline
