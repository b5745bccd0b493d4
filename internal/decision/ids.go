package decision

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

// IDSource makes decision ids: a random per-process prefix and a counter.
// They are unique across restarts and cost no system call per decision.
type IDSource struct {
	prefix string
	n      atomic.Uint64
}

func NewIDSource() *IDSource {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return &IDSource{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (s *IDSource) Next() string {
	var buf [40]byte
	out := append(buf[:0], s.prefix...)
	out = strconv.AppendUint(out, s.n.Add(1), 10)
	return string(out)
}
