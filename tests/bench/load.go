package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The load generator is closed-loop: conns workers, each with one
// keep-alive HTTP/1.1 connection, send a request, read the whole answer,
// record the latency and send the next one. Requests are serialized once,
// up front, so the generator spends its CPU on the socket rather than on
// building requests: on two shared cores every cycle it saves is a cycle
// the server under test gets.

// wire is one serialized request; idAt are the offsets of the 8 hex
// digits of its content id (none when it has no id).
type wire struct {
	raw  []byte
	idAt []int
}

// wireRequests serializes reqs for addr; pick chooses path and body.
func wireRequests(addr string, reqs []request, pick func(r *request) (string, []byte)) []wire {
	out := make([]wire, len(reqs))
	for i := range reqs {
		path, body := pick(&reqs[i])
		var b bytes.Buffer
		fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, addr, len(body))
		b.Write(body)
		w := wire{raw: b.Bytes()}
		if id := reqs[i].id; id != "" {
			for off := 0; ; {
				j := bytes.Index(w.raw[off:], []byte(id))
				if j < 0 {
					break
				}
				w.idAt = append(w.idAt, off+j+1) // after the "c"
				off += j + len(id)
			}
		}
		out[i] = w
	}
	return out
}

const hexDigits = "0123456789abcdef"

// withFreshID copies w into buf with its content id replaced by n in hex,
// so that no two sends ask the same question.
func withFreshID(buf []byte, w *wire, n uint32) []byte {
	buf = append(buf[:0], w.raw...)
	for _, at := range w.idAt {
		for k := 7; k >= 0; k-- {
			buf[at+k] = hexDigits[(n>>(4*(7-k)))&0xf]
		}
	}
	return buf
}

// loadResult is what one target measured.
type loadResult struct {
	requests  int // completed inside the measured window
	errors    int // transport errors and non-2xx answers inside the window
	window    time.Duration
	latencies []time.Duration // sorted
	serverCPU time.Duration   // user+system CPU of the server process in the window
	// statuses counts HTTP statuses seen (all phases), to spot a target
	// that answers errors fast.
	statuses map[int]int
}

// add merges two measurements of one target (rounds of a run): requests,
// errors, windows and server CPU add up, latencies are pooled.
func (r *loadResult) add(o *loadResult) *loadResult {
	if r == nil {
		r = &loadResult{statuses: map[int]int{}}
	}
	r.requests += o.requests
	r.errors += o.errors
	r.window += o.window
	r.serverCPU += o.serverCPU
	r.latencies = append(r.latencies, o.latencies...)
	slices.Sort(r.latencies)
	for s, n := range o.statuses {
		r.statuses[s] += n
	}
	return r
}

func (r *loadResult) rps() float64 { return float64(r.requests) / r.window.Seconds() }

func (r *loadResult) quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(q * float64(len(r.latencies)-1))
	return r.latencies[i]
}

// cpuPerRequest is the server's CPU time per measured request.
func (r *loadResult) cpuPerRequest() time.Duration {
	if r.requests == 0 {
		return 0
	}
	return r.serverCPU / time.Duration(r.requests)
}

// runLoad drives addr with conns connections for warmup and then measures
// for duration. Each worker starts at its own offset in reqs and cycles
// through it; with unique, every request that carries a content id gets a
// never-sent one (round keeps the ids of successive rounds against one
// server apart). cpu, when not nil, reads the server's cumulative CPU time.
func runLoad(addr string, reqs []wire, unique bool, round, conns int, warmup, duration time.Duration, cpu func() (time.Duration, error)) (*loadResult, error) {
	start := time.Now()
	measureFrom := start.Add(warmup)
	measureTo := measureFrom.Add(duration)
	var stop atomic.Bool
	type workerOut struct {
		lat      []time.Duration
		errs     int
		statuses map[int]int
		err      error
	}
	outs := make([]workerOut, conns)
	var wg sync.WaitGroup
	for w := range conns {
		wg.Go(func() {
			o := &outs[w]
			o.statuses = map[int]int{}
			o.lat = make([]time.Duration, 0, 1<<16)
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				o.err = err
				return
			}
			defer c.Close()
			br := bufio.NewReaderSize(c, 16<<10)
			i := w * len(reqs) / conns
			var buf []byte
			// 32 bits of id: 5 of worker, 5 of round, 22 (4M requests) of
			// sequence.
			seq := uint32(w)<<27 | uint32(round)<<22
			for !stop.Load() {
				t0 := time.Now()
				if t0.After(measureTo) {
					return
				}
				_ = c.SetDeadline(t0.Add(10 * time.Second))
				req := &reqs[i%len(reqs)]
				raw := req.raw
				if unique && len(req.idAt) > 0 {
					buf = withFreshID(buf, req, seq)
					raw = buf
					seq++
				}
				status, err := roundTrip(c, br, raw)
				t1 := time.Now()
				i++
				inWindow := !t0.Before(measureFrom) && !t1.After(measureTo)
				if err != nil {
					if inWindow {
						o.errs++
					}
					o.err = err
					return
				}
				o.statuses[status]++
				if !inWindow {
					continue
				}
				if status < 200 || status > 299 {
					o.errs++
					continue
				}
				o.lat = append(o.lat, t1.Sub(t0))
			}
		})
	}
	// Sample the server's CPU at the window's edges.
	var cpu0, cpu1 time.Duration
	var cpuErr error
	if cpu != nil {
		time.Sleep(time.Until(measureFrom))
		cpu0, cpuErr = cpu()
		time.Sleep(time.Until(measureTo))
		if cpuErr == nil {
			cpu1, cpuErr = cpu()
		}
	}
	// Bound the run: workers return once past measureTo; a hung
	// connection is cut by its deadline.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Until(measureTo) + 15*time.Second):
		stop.Store(true)
		return nil, errors.New("load: workers did not finish in time")
	}
	res := &loadResult{window: duration, statuses: map[int]int{}}
	var firstErr error
	for _, o := range outs {
		res.latencies = append(res.latencies, o.lat...)
		res.errors += o.errs
		for s, n := range o.statuses {
			res.statuses[s] += n
		}
		if o.err != nil && firstErr == nil {
			firstErr = o.err
		}
	}
	res.requests = len(res.latencies)
	slices.Sort(res.latencies)
	if cpuErr == nil && cpu != nil {
		res.serverCPU = cpu1 - cpu0
	}
	if firstErr != nil && res.requests == 0 {
		return nil, fmt.Errorf("load %s: %w", addr, firstErr)
	}
	return res, nil
}

// roundTrip writes one serialized request and reads the answer: status
// line, headers, and a Content-Length or chunked body.
func roundTrip(c net.Conn, br *bufio.Reader, req []byte) (int, error) {
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, fmt.Errorf("malformed status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("malformed status line %q", line)
	}
	length, chunked, closing := -1, false, false
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(h) <= 2 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "Content-Length"):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return 0, fmt.Errorf("bad Content-Length %q", value)
			}
		case asciiEqualFold(name, "Transfer-Encoding"):
			chunked = asciiEqualFold(value, "chunked")
		case asciiEqualFold(name, "Connection"):
			closing = asciiEqualFold(value, "close")
		}
	}
	switch {
	case chunked:
		if _, err := io.Copy(io.Discard, httputil.NewChunkedReader(br)); err != nil {
			return 0, err
		}
		// Trailer section: an empty line.
		if _, err := br.ReadSlice('\n'); err != nil {
			return 0, err
		}
	case length >= 0:
		if _, err := br.Discard(length); err != nil {
			return 0, err
		}
	default:
		return 0, errors.New("answer without Content-Length or chunked body")
	}
	if closing {
		return status, errors.New("server closed the connection")
	}
	return status, nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if x|0x20 != y|0x20 {
			return false
		}
	}
	return true
}
