package keystore

// LoadSeedKeysBaseline is the loader before streaming, for benchmarks.
var LoadSeedKeysBaseline = loadSeedKeysBaseline
