package server

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// DecisionEntry is one line of the decision log. It never holds a secret:
// the key appears by id (and revision) only, and the query as the policy
// saw it (first value of each parameter) with the value of draftKey
// redacted — the policy reads only its presence. What the policy saw is
// there so that `keygate replay` can ask a candidate policy the same
// question; a line with Shadow set records a shadow candidate's
// disagreement with the decision of the same id, not a decision of its
// own.
type DecisionEntry struct {
	Time           time.Time     `json:"time"`
	DecisionID     string        `json:"decisionId"`
	Service        string        `json:"service"`
	KeyID          string        `json:"keyId"`
	API            string        `json:"api"`
	Method         string        `json:"method"`
	Path           string        `json:"path"`
	Allow          bool          `json:"allow"`
	Status         int           `json:"status"`
	Code           string        `json:"code"`
	PolicyRevision string        `json:"policyRevision"`
	LatencyMicros  float64       `json:"latencyMicros"`
	Latency        time.Duration `json:"-"`
	Endpoint       string        `json:"endpoint"`
	Permission     string        `json:"permission"`
	KeyRevision    uint64        `json:"keyRevision,omitempty"`
	// Query is written as an object of first values; see appendQuery.
	Query  [][2]string    `json:"-"`
	Shadow *ShadowOutcome `json:"shadow,omitempty"`
}

// ShadowOutcome is what a shadow candidate decided where it disagreed with
// the serving policy.
type ShadowOutcome struct {
	Revision string `json:"revision"`
	Allow    bool   `json:"allow"`
	Status   int    `json:"status"`
	Code     string `json:"code"`
	Error    string `json:"error,omitempty"`
}

// redactedQueryParam reports a query parameter whose value never reaches
// the decision log: a draftKey grants a look at one draft.
func redactedQueryParam(name string) bool { return name == "draftKey" }

// RedactedValue replaces a redacted query value in the decision log.
const RedactedValue = "[redacted]"

// DecisionLog writes decision entries as JSON lines from a goroutine of its
// own, so a slow disk never slows a decision. When the writer falls behind
// by more than the buffer, entries are dropped and counted
// (keygate_decision_log_dropped_total) rather than blocking decisions.
type DecisionLog struct {
	ch      chan DecisionEntry
	w       io.Writer
	dropped func()
	done    chan struct{}
	once    sync.Once
}

// NewDecisionLog starts a decision log writing to w with room for buffer
// pending entries; dropped is called for each entry that did not fit.
func NewDecisionLog(w io.Writer, buffer int, dropped func()) *DecisionLog {
	if buffer <= 0 {
		buffer = 16384
	}
	if dropped == nil {
		dropped = func() {}
	}
	l := &DecisionLog{ch: make(chan DecisionEntry, buffer), w: w, dropped: dropped, done: make(chan struct{})}
	go l.run()
	return l
}

// Log queues an entry without blocking.
func (l *DecisionLog) Log(e DecisionEntry) {
	select {
	case l.ch <- e:
	default:
		l.dropped()
	}
}

// flushEvery bounds how long a written entry may sit in the buffer: lines
// reach the file in batches (one write per 64 KiB or per interval), not one
// system call per decision.
const flushEvery = 100 * time.Millisecond

func (l *DecisionLog) run() {
	defer close(l.done)
	bw := bufio.NewWriterSize(l.w, 64<<10)
	line := make([]byte, 0, 512)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		select {
		case e, ok := <-l.ch:
			if !ok {
				_ = bw.Flush()
				return
			}
			line = appendDecisionEntry(line[:0], &e)
			_, _ = bw.Write(line)
		case <-tick.C:
			if bw.Buffered() > 0 {
				_ = bw.Flush()
			}
		}
	}
}

// Close flushes pending entries and stops the writer. Log must not be
// called after Close.
func (l *DecisionLog) Close() {
	l.once.Do(func() { close(l.ch) })
	<-l.done
}
