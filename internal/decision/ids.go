package decision

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

// IDSource makes decision ids (and the server's request ids): a random
// per-process prefix and a counter. They are unique across restarts and
// cost no system call per decision.
type IDSource struct {
	prefix string
	n      atomic.Uint64
}

// NewIDSource returns a source with a fresh random prefix.
func NewIDSource() *IDSource {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return &IDSource{prefix: hex.EncodeToString(b[:]) + "-"}
}

// Next returns a new id.
func (s *IDSource) Next() string {
	var buf [40]byte
	out := append(buf[:0], s.prefix...)
	out = strconv.AppendUint(out, s.n.Add(1), 10)
	return string(out)
}
