package server

import (
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
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
	Query [][2]string `json:"-"`
	// ClientIP is the client's address, logged only for a service that
	// restricts addresses (the only decisions it is part of).
	ClientIP string         `json:"clientIp,omitempty"`
	Shadow   *ShadowOutcome `json:"shadow,omitempty"`
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

// Reasons a decision-log entry is lost (the reason label of
// keygate_decision_log_dropped_total).
const (
	// DropQueueFull: the writer fell behind (a slow or blocked sink) and
	// the queue was full, in entries or in bytes.
	DropQueueFull = "queue_full"
	// DropWriteError: the sink refused the write (closed pipe, disk full);
	// every entry of the failed batch is lost.
	DropWriteError = "write_error"
)

// Defaults of DecisionLogOptions.
const (
	defaultLogEntries     = 16384
	defaultLogBytes       = 8 << 20
	defaultLogReportEvery = 10 * time.Second
	defaultLogCloseWait   = 5 * time.Second
)

// maxLogField bounds each string of a logged entry: a longer one is cut
// and the entry counted as truncated.
const maxLogField = 1024

// entryOverhead is what an entry costs beyond its strings: the struct in
// the queue and the JSON punctuation and field names of its line.
const entryOverhead = 256

// DecisionLogOptions configure a DecisionLog.
type DecisionLogOptions struct {
	// Entries bounds the queue in entries; 16,384 when zero.
	Entries int
	// Bytes bounds the queue in bytes (the entries' strings plus a fixed
	// overhead each); 8 MiB when zero. With Entries it bounds the memory a
	// stalled sink can make keygate hold.
	Bytes int64
	// Dropped is called with the reason and the number of entries lost;
	// (*Metrics).DecisionLogDropped counts them.
	Dropped func(reason string, n int)
	// Truncated is called for each entry whose fields were cut to 1 KiB;
	// (*Metrics).DecisionLogTruncated counts them.
	Truncated func()
	// Logger receives at most one warning per ReportEvery while entries
	// are being lost, never one per entry; discarded when nil.
	Logger *slog.Logger
	// ReportEvery is the interval of those warnings; 10 s when zero.
	ReportEvery time.Duration
	// CloseWait bounds how long Close waits for a sink to take the last
	// entries; 5 s when zero. A blocked sink must not block shutdown.
	CloseWait time.Duration
}

// DecisionLog writes decision entries as JSON lines from a goroutine of its
// own, so a slow, blocked or failing sink never slows a decision. Entries
// that do not fit the queue (bounded in entries and in bytes) or that the
// sink refuses are dropped and counted (keygate_decision_log_dropped_total
// by reason); a warning is logged once per interval while that happens.
type DecisionLog struct {
	ch        chan DecisionEntry
	w         io.Writer
	maxBytes  int64
	queued    atomic.Int64 // bytes of the entries in ch
	dropped   func(reason string, n int)
	truncated func()
	log       *slog.Logger
	every     time.Duration
	closeWait time.Duration

	// Losses since the last warning, for the reporter.
	lostFull, lostWrite atomic.Int64
	errMu               sync.Mutex
	lastErr             error

	// closeMu orders Log against Close: a decision that finishes after a
	// shutdown timeout must not send on the closed channel (a panic).
	closeMu sync.RWMutex
	closed  bool

	done     chan struct{} // closed when the writer has flushed and stopped
	stop     chan struct{} // stops the reporter
	reported chan struct{} // closed when the reporter has stopped
	once     sync.Once
}

// NewDecisionLog starts a decision log writing to w.
func NewDecisionLog(w io.Writer, opts DecisionLogOptions) *DecisionLog {
	if opts.Entries <= 0 {
		opts.Entries = defaultLogEntries
	}
	if opts.Bytes <= 0 {
		opts.Bytes = defaultLogBytes
	}
	if opts.Dropped == nil {
		opts.Dropped = func(string, int) {}
	}
	if opts.Truncated == nil {
		opts.Truncated = func() {}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ReportEvery <= 0 {
		opts.ReportEvery = defaultLogReportEvery
	}
	if opts.CloseWait <= 0 {
		opts.CloseWait = defaultLogCloseWait
	}
	l := &DecisionLog{
		ch: make(chan DecisionEntry, opts.Entries), w: w, maxBytes: opts.Bytes,
		dropped: opts.Dropped, truncated: opts.Truncated,
		log: opts.Logger.With("component", "decisionlog"), every: opts.ReportEvery, closeWait: opts.CloseWait,
		done: make(chan struct{}), stop: make(chan struct{}), reported: make(chan struct{}),
	}
	go l.run()
	go l.report()
	return l
}

// Log queues an entry without blocking: an entry that does not fit is
// dropped and counted.
func (l *DecisionLog) Log(e DecisionEntry) {
	if boundEntry(&e) {
		l.truncated()
	}
	size := entrySize(&e)
	l.closeMu.RLock()
	defer l.closeMu.RUnlock()
	if l.closed {
		l.lose(DropQueueFull, 1)
		return
	}
	if l.queued.Add(size) > l.maxBytes {
		l.queued.Add(-size)
		l.lose(DropQueueFull, 1)
		return
	}
	select {
	case l.ch <- e:
	default:
		l.queued.Add(-size)
		l.lose(DropQueueFull, 1)
	}
}

func (l *DecisionLog) lose(reason string, n int) {
	if reason == DropQueueFull {
		l.lostFull.Add(int64(n))
	} else {
		l.lostWrite.Add(int64(n))
	}
	l.dropped(reason, n)
}

// boundEntry cuts every string of e to maxLogField bytes and reports
// whether it cut any.
func boundEntry(e *DecisionEntry) bool {
	cut := false
	for _, s := range []*string{&e.DecisionID, &e.Service, &e.KeyID, &e.API, &e.Method, &e.Path, &e.Code, &e.PolicyRevision,
		&e.Endpoint, &e.Permission, &e.ClientIP} {
		if len(*s) > maxLogField {
			*s = truncateField(*s)
			cut = true
		}
	}
	if e.Shadow != nil {
		for _, s := range []*string{&e.Shadow.Revision, &e.Shadow.Code, &e.Shadow.Error} {
			if len(*s) > maxLogField {
				*s = truncateField(*s)
				cut = true
			}
		}
	}
	// The query is the request's: copy it before cutting, never write
	// into the caller's slice.
	copied := false
	for i, kv := range e.Query {
		if len(kv[0]) > maxLogField || len(kv[1]) > maxLogField {
			if !copied {
				e.Query, copied = append([][2]string(nil), e.Query...), true
			}
			e.Query[i] = [2]string{boundField(kv[0]), boundField(kv[1])}
			cut = true
		}
	}
	return cut
}

func boundField(s string) string {
	if len(s) > maxLogField {
		return truncateField(s)
	}
	return s
}

// truncateField returns the first maxLogField bytes of s (on a rune
// boundary) with an ellipsis, as a new string: the queue must not keep the
// request's string alive.
func truncateField(s string) string {
	const ellipsis = "…"
	n := maxLogField - len(ellipsis)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + ellipsis
}

// entrySize is what an entry costs the queue, in bytes.
func entrySize(e *DecisionEntry) int64 {
	n := entryOverhead + len(e.DecisionID) + len(e.Service) + len(e.KeyID) + len(e.API) +
		len(e.Method) + len(e.Path) + len(e.Code) + len(e.PolicyRevision) + len(e.Endpoint) + len(e.Permission) + len(e.ClientIP)
	for _, kv := range e.Query {
		n += len(kv[0]) + len(kv[1]) + 8
	}
	if e.Shadow != nil {
		n += len(e.Shadow.Revision) + len(e.Shadow.Code) + len(e.Shadow.Error) + 64
	}
	return int64(n)
}

// flushEvery bounds how long a written entry may sit in the buffer: lines
// reach the file in batches (one write per 64 KiB or per interval), not one
// system call per decision.
const flushEvery = 100 * time.Millisecond

// batchBytes is the size at which a batch is written without waiting for
// the interval.
const batchBytes = 64 << 10

func (l *DecisionLog) run() {
	defer close(l.done)
	batch := make([]byte, 0, batchBytes+4<<10)
	lines := 0
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if _, err := l.w.Write(batch); err != nil {
			// The sink refused the batch (closed pipe, disk full, I/O
			// error): its entries are lost and counted, and the next
			// batch tries again, so logging resumes when the sink does.
			l.errMu.Lock()
			l.lastErr = err
			l.errMu.Unlock()
			l.lose(DropWriteError, lines)
		}
		batch, lines = batch[:0], 0
	}
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		select {
		case e, ok := <-l.ch:
			if !ok {
				flush()
				return
			}
			l.queued.Add(-entrySize(&e))
			batch = appendDecisionEntry(batch, &e)
			lines++
			if len(batch) >= batchBytes {
				flush()
			}
		case <-tick.C:
			flush()
		}
	}
}

// report logs one warning per interval in which entries were lost, with
// how many and why, so that a broken sink is visible without a log line
// per decision.
func (l *DecisionLog) report() {
	defer close(l.reported)
	tick := time.NewTicker(l.every)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			l.warn()
			return
		case <-tick.C:
			l.warn()
		}
	}
}

func (l *DecisionLog) warn() {
	full, write := l.lostFull.Swap(0), l.lostWrite.Swap(0)
	if full == 0 && write == 0 {
		return
	}
	attrs := []any{"queue_full", full, "write_error", write, "interval", l.every.String()}
	l.errMu.Lock()
	if err := l.lastErr; err != nil && write > 0 {
		attrs = append(attrs, "error", err.Error())
	}
	l.errMu.Unlock()
	l.log.Warn("decision log entries dropped", attrs...)
}

// Close flushes pending entries and stops the writer, waiting at most
// CloseWait for a slow sink (a blocked sink keeps its goroutine, and the
// entries still queued are lost). An entry logged after Close is dropped
// and counted.
func (l *DecisionLog) Close() {
	l.once.Do(func() {
		l.closeMu.Lock()
		l.closed = true
		close(l.ch)
		l.closeMu.Unlock()
		select {
		case <-l.done:
		case <-time.After(l.closeWait):
			l.log.Warn("decision log sink did not take the last entries", "waited", l.closeWait.String())
		}
		close(l.stop)
		<-l.reported
	})
}
