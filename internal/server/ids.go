package server

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

// idSource makes decision ids: a random per-process prefix and a counter.
// They are unique across restarts and cost no system call per decision.
type idSource struct {
	prefix string
	n      atomic.Uint64
}

func newIDSource() *idSource {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return &idSource{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (s *idSource) next() string {
	var buf [40]byte
	out := append(buf[:0], s.prefix...)
	out = strconv.AppendUint(out, s.n.Add(1), 10)
	return string(out)
}
