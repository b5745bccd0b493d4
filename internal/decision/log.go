package decision

import (
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/internal/text"
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
	Time       time.Time `json:"time"`
	DecisionID string    `json:"decisionId"`
	Service    string    `json:"service"`
	KeyID      string    `json:"keyId"`
	API        string    `json:"api"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	Allow      bool      `json:"allow"`
	Status     int       `json:"status"`
	Code       string    `json:"code"`
	// Message is the deny message the client is answered (what microCMS
	// clients see); empty on an allow.
	Message        string        `json:"message"`
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
	ClientIP string `json:"clientIp,omitempty"`
	// Truncated marks a line whose fields were cut to maxLogField: it no
	// longer holds the question exactly as it was asked.
	Truncated bool `json:"truncated,omitempty"`
	// NotAsked marks an answer the server gave without asking the policy
	// (a stale key store's 503): there is no question to ask again.
	NotAsked bool `json:"notAsked,omitempty"`
	// Legacy is set on a decision judged by the old key headers
	// (--legacy-headers): which headers were sent and the key each one
	// matched, so that the question can be asked again as it was.
	Legacy *LegacyEntry   `json:"legacy,omitempty"`
	Shadow *ShadowOutcome `json:"shadow,omitempty"`
}

// LegacyEntry is the old-header part of a decision's question: what the
// legacy selection policy saw (each header sent, the key its value
// matched, whether X-MICROCMS-API-KEY was sent too) and the header whose
// key it chose. It names keys by id, never by secret.
type LegacyEntry struct {
	// MicrocmsKey reports that X-MICROCMS-API-KEY was sent as well.
	MicrocmsKey bool `json:"microcmsKey"`
	// Headers lists the old headers sent, by canonical name, in name
	// order.
	Headers []LegacyHeaderEntry `json:"headers"`
	// KeyHeader is the header whose key the selection chose; "" when it
	// refused.
	KeyHeader string `json:"keyHeader"`
}

// LegacyHeaderEntry is one old header of a decision: the key its value
// matched (of any service), or none (an empty value, or a secret that
// matches no key).
type LegacyHeaderEntry struct {
	Header      string `json:"header"`
	KeyID       string `json:"keyId"`
	KeyRevision uint64 `json:"keyRevision,omitempty"`
}

// ShadowOutcome is what a shadow candidate decided where it disagreed with
// the serving policy.
type ShadowOutcome struct {
	Revision string `json:"revision"`
	Allow    bool   `json:"allow"`
	Status   int    `json:"status"`
	Code     string `json:"code"`
	Message  string `json:"message"`
	// KeyHeader is the old header whose key the candidate chose, for a
	// decision judged by the old key headers.
	KeyHeader string `json:"keyHeader,omitempty"`
	Error     string `json:"error,omitempty"`
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
	// the lines not yet written reached their bound, in entries or in
	// bytes.
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

// DecisionLogOptions configure a DecisionLog.
type DecisionLogOptions struct {
	// Entries bounds the lines not yet written (buffered, or in the
	// writer's hands); 16,384 when zero.
	Entries int
	// Bytes bounds the same lines in bytes (their JSON); 8 MiB when zero.
	// With Entries it bounds the memory a stalled sink can make keygate
	// hold.
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
// own, so a slow, blocked or failing sink never slows a decision. A decision
// encodes its line, then copies it into a shared buffer under a mutex; the
// writer takes the whole buffer at once (every flushEvery, or as soon as it
// holds batchBytes) and writes it with one call. A decision never waits for the sink, and no
// goroutine hand-off happens per entry. Lines not yet written — buffered or
// in the writer's hands — are bounded in entries and in bytes: a line that
// does not fit, or that the sink refuses, is dropped and counted
// (keygate_decision_log_dropped_total by reason); a warning is logged once
// per interval while that happens.
type DecisionLog struct {
	w          io.Writer
	maxEntries int
	maxBytes   int64
	dropped    func(reason string, n int)
	truncated  func()
	log        *slog.Logger
	every      time.Duration
	closeWait  time.Duration

	// mu guards the buffer, the counts of unwritten lines and closed.
	mu      sync.Mutex
	pending []byte // lines the writer has not taken yet
	lines   int    // lines in pending
	// unwritten counts the lines (and queued their bytes) buffered or
	// being written: the bounds apply to both, so a stalled sink holds at
	// most maxBytes of lines.
	unwritten int
	queued    atomic.Int64
	closed    bool
	kick      chan struct{} // capacity 1: pending holds a full batch
	lineBufs  sync.Pool     // *[]byte: a line being encoded

	// Losses since the last warning, for the reporter.
	lostFull, lostWrite atomic.Int64
	errMu               sync.Mutex
	lastErr             error

	closing  chan struct{} // closed by Close: flush and stop
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
		w: w, maxEntries: opts.Entries, maxBytes: opts.Bytes,
		dropped: opts.Dropped, truncated: opts.Truncated,
		log: opts.Logger.With("component", "decisionlog"), every: opts.ReportEvery, closeWait: opts.CloseWait,
		kick: make(chan struct{}, 1), closing: make(chan struct{}),
		lineBufs: sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }},
		done:     make(chan struct{}), stop: make(chan struct{}), reported: make(chan struct{}),
	}
	go l.run()
	go l.report()
	return l
}

// Log appends an entry's line to the buffer without waiting for the sink:
// a line that does not fit the bounds, or logged after Close, is dropped
// and counted. The line is encoded before the lock is taken, so that the
// lock is held for a copy only (decisions on many cores share it).
func (l *DecisionLog) Log(e DecisionEntry) {
	if boundEntry(&e) {
		e.Truncated = true
		l.truncated()
	}
	buf := l.lineBufs.Get().(*[]byte)
	line := appendDecisionEntry((*buf)[:0], &e)
	size := int64(len(line))
	l.mu.Lock()
	if l.closed || l.unwritten >= l.maxEntries || l.queued.Load()+size > l.maxBytes {
		l.mu.Unlock()
		l.putLineBuf(buf, line)
		l.lose(DropQueueFull, 1)
		return
	}
	l.pending = append(l.pending, line...)
	l.queued.Add(size)
	l.lines++
	l.unwritten++
	full := len(l.pending) >= batchBytes
	l.mu.Unlock()
	l.putLineBuf(buf, line)
	if full {
		select {
		case l.kick <- struct{}{}:
		default: // the writer is already told
		}
	}
}

// putLineBuf returns a line's buffer to the pool, unless an entry made it
// large (fields are cut to 1 KiB each, so this is rare).
func (l *DecisionLog) putLineBuf(buf *[]byte, line []byte) {
	if cap(line) > 16<<10 {
		return
	}
	*buf = line[:0]
	l.lineBufs.Put(buf)
}

func (l *DecisionLog) lose(reason string, n int) {
	if reason == DropQueueFull {
		l.lostFull.Add(int64(n))
	} else {
		l.lostWrite.Add(int64(n))
	}
	l.dropped(reason, n)
}

// boundEntry cuts every string of e to maxLogField bytes (text.Bounded: on
// a rune boundary, with an ellipsis, as a new string that never shares the
// request's memory) and reports whether it cut any.
func boundEntry(e *DecisionEntry) bool {
	cut := false
	for _, s := range []*string{&e.DecisionID, &e.Service, &e.KeyID, &e.API, &e.Method, &e.Path, &e.Code, &e.Message, &e.PolicyRevision,
		&e.Endpoint, &e.Permission, &e.ClientIP} {
		if len(*s) > maxLogField {
			*s = text.Bounded(*s, maxLogField)
			cut = true
		}
	}
	if e.Shadow != nil {
		for _, s := range []*string{&e.Shadow.Revision, &e.Shadow.Code, &e.Shadow.Message, &e.Shadow.Error} {
			if len(*s) > maxLogField {
				*s = text.Bounded(*s, maxLogField)
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
			e.Query[i] = [2]string{text.Bounded(kv[0], maxLogField), text.Bounded(kv[1], maxLogField)}
			cut = true
		}
	}
	return cut
}

// flushEvery bounds how long a written entry may sit in the buffer: lines
// reach the file in batches (one write per 64 KiB or per interval), not one
// system call per decision.
const flushEvery = 100 * time.Millisecond

// batchBytes is the size at which a batch is written without waiting for
// the interval.
const batchBytes = 64 << 10

// maxSpareBytes bounds the buffer the writer keeps between batches.
const maxSpareBytes = 1 << 20

func (l *DecisionLog) run() {
	defer close(l.done)
	var spare []byte
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		closing := false
		select {
		case <-l.kick:
		case <-tick.C:
		case <-l.closing:
			closing = true
		}
		l.mu.Lock()
		batch, lines := l.pending, l.lines
		l.pending, l.lines = spare[:0], 0
		l.mu.Unlock()
		if len(batch) > 0 {
			if _, err := l.w.Write(batch); err != nil {
				// The sink refused the batch (closed pipe, disk full, I/O
				// error): its lines are lost and counted, and the next
				// batch tries again, so logging resumes when the sink
				// does.
				l.errMu.Lock()
				l.lastErr = err
				l.errMu.Unlock()
				l.lose(DropWriteError, lines)
			}
			l.mu.Lock()
			l.unwritten -= lines
			l.queued.Add(-int64(len(batch)))
			l.mu.Unlock()
		}
		// Keep the buffer for the next swap (a steady load then allocates
		// none), unless a stalled sink made it large: memory a burst
		// needed once is given back.
		if cap(batch) <= maxSpareBytes {
			spare = batch
		} else {
			spare = nil
		}
		if closing {
			return
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
// entries still buffered are lost). An entry logged after Close is dropped
// and counted.
func (l *DecisionLog) Close() {
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.closing)
		select {
		case <-l.done:
		case <-time.After(l.closeWait):
			l.log.Warn("decision log sink did not take the last entries", "waited", l.closeWait.String())
		}
		close(l.stop)
		<-l.reported
	})
}
