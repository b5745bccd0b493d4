package decision

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/prometheus/client_golang/prometheus"
)

// ShadowOptions configure shadow evaluation: a candidate policy asked the
// same questions as the serving one, off the request path, its answers
// compared and never used.
type ShadowOptions struct {
	// Policy is the candidate; nil disables shadow evaluation.
	Policy Decider
	// Sample is the fraction of decisions (0–1] the candidate evaluates.
	Sample float64
	// Queue bounds the decisions waiting for the candidate; beyond it they
	// are dropped and counted. 4096 when zero.
	Queue int
	// Workers evaluating the candidate; 1 when zero.
	Workers int
	// Timeout bounds one candidate evaluation; 1s when zero.
	Timeout time.Duration
}

// shadow evaluates a candidate policy beside the serving one. A decision
// is offered to it after it was answered and logged: the offer is a
// non-blocking send of a copy of the question (the secret's hash, never
// the secret), so the candidate can neither change nor slow an answer.
type shadow struct {
	s       *Point
	policy  Decider
	sample  float64
	timeout time.Duration
	jobs    chan shadowJob
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
	m       *shadowMetrics
}

type shadowJob struct {
	req        Request // without its secret
	hasSecret  bool
	secretHash [32]byte
	// legacy holds the old key headers the decision was judged by (with
	// --legacy-headers), their values hashed; nil for any other decision.
	legacy []legacyHash
	gen    uint64
	entry  DecisionEntry
}

type shadowMetrics struct {
	evaluations   *prometheus.CounterVec
	disagreements *prometheus.CounterVec
	dropped       prometheus.Counter
	revision      *prometheus.GaugeVec
}

func newShadowMetrics(reg prometheus.Registerer) *shadowMetrics {
	sm := &shadowMetrics{
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_shadow_evaluations_total",
			Help: "Decisions the shadow policy evaluated, by entrypoint and result (agree, disagree, error, skipped: the keys changed meanwhile; unloaded: no candidate policy loaded yet).",
		}, []string{"entrypoint", "result"}),
		disagreements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_shadow_disagreements_total",
			Help: "Decisions the shadow policy answered differently, by entrypoint, the serving code and the shadow's code.",
		}, []string{"entrypoint", "serving_code", "shadow_code"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keygate_shadow_dropped_total", Help: "Decisions not shadow-evaluated because the shadow queue was full.",
		}),
		revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keygate_shadow_revision_info", Help: "The shadow policy revision evaluating now (value 1).",
		}, []string{"revision"}),
	}
	reg.MustRegister(sm.evaluations, sm.disagreements, sm.dropped, sm.revision)
	return sm
}

func newShadow(s *Point, reg prometheus.Registerer, opts ShadowOptions) *shadow {
	if opts.Policy == nil || opts.Sample <= 0 {
		return nil
	}
	if opts.Queue <= 0 {
		opts.Queue = 4096
	}
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	sh := &shadow{
		s: s, policy: opts.Policy, sample: min(opts.Sample, 1), timeout: opts.Timeout,
		jobs: make(chan shadowJob, opts.Queue), done: make(chan struct{}), m: newShadowMetrics(reg),
	}
	sh.m.revision.WithLabelValues(opts.Policy.Revision()).Set(1)
	for range opts.Workers {
		sh.wg.Go(sh.run)
	}
	return sh
}

// offer queues a decision for the candidate when it is sampled and there
// is room; it never blocks.
func (sh *shadow) offer(r *Request, hasSecret bool, secretHash *[32]byte, legacy []legacyHash, gen uint64, e *DecisionEntry) {
	if sh.sample < 1 && rand.Float64() >= sh.sample {
		return
	}
	j := shadowJob{req: *r, hasSecret: hasSecret, secretHash: *secretHash, legacy: legacy, gen: gen, entry: *e}
	// The job keeps hashes only: the secret and the old headers' values
	// never wait in the queue.
	j.req.secret, j.req.legacy = "", nil
	select {
	case sh.jobs <- j:
	default:
		sh.m.dropped.Inc()
	}
}

func (sh *shadow) run() {
	for {
		select {
		case <-sh.done:
			return
		case j := <-sh.jobs:
			sh.evaluate(&j)
		}
	}
}

// evaluate asks the candidate the job's question with the key the secret
// names now (for old key headers: the key each header's value names, through
// the legacy selection), compares what the client is told (allow, status,
// code, message; and which old header's key was chosen) with the serving
// answer and records a disagreement.
func (sh *shadow) evaluate(j *shadowJob) {
	entrypoint := engine.Content
	if j.req.api == APIManagement {
		entrypoint = engine.Management
	}
	if sh.policy.Revision() == "" {
		// The candidate has not loaded yet (a shadow bundle that was
		// unavailable at start): there is nothing to compare with.
		sh.m.evaluations.WithLabelValues(entrypoint, "unloaded").Inc()
		return
	}
	var key keystore.KeyRef
	found := false
	var legacyKeys []legacyKey
	if j.legacy != nil {
		legacyKeys = sh.s.legacyKeys(j.legacy)
	} else if j.hasSecret {
		key, found = sh.s.keys.KeyRefBySecretHash(j.secretHash)
	}
	if sh.s.keys.Generation() != j.gen {
		// A key, service or member changed since the decision: the
		// candidate would not see the serving policy's input.
		sh.m.evaluations.WithLabelValues(entrypoint, "skipped").Inc()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), sh.timeout)
	var d Decision
	var err error
	e := &j.entry
	sameHeader := true // the key of the same old header chosen
	keyHeader := ""
	if j.legacy != nil {
		var le *LegacyEntry
		d, le, err = sh.s.evaluateLegacyRequest(ctx, sh.policy, &j.req, legacyKeys, j.hasSecret, false)
		keyHeader = le.KeyHeader
		sameHeader = e.Legacy != nil && keyHeader == e.Legacy.KeyHeader
	} else {
		d, err = sh.s.evaluateRequest(ctx, sh.policy, &j.req, key, found, false)
	}
	cancel()
	if err == nil && d.Allow == e.Allow && d.Status == e.Status && d.Code == e.Code && d.Message == e.Message && sameHeader {
		sh.m.evaluations.WithLabelValues(entrypoint, "agree").Inc()
		return
	}
	result := "disagree"
	out := &ShadowOutcome{Revision: d.PolicyRevision, Allow: d.Allow, Status: d.Status, Code: d.Code, Message: d.Message, KeyHeader: keyHeader}
	if err != nil {
		result, out.Error = "error", err.Error()
	}
	sh.m.evaluations.WithLabelValues(entrypoint, result).Inc()
	sh.m.disagreements.WithLabelValues(entrypoint, e.Code, d.Code).Inc()
	if sh.s.declog != nil {
		e.Shadow = out
		sh.s.declog.Log(*e)
	}
}

// reloaded records the candidate's revision after a reload.
func (sh *shadow) reloaded() {
	sh.m.revision.Reset()
	sh.m.revision.WithLabelValues(sh.policy.Revision()).Set(1)
}

// close stops the workers; offers after it are dropped (or wait in the
// queue, never evaluated). It waits for an evaluation in progress, so the
// decision log may be closed after it.
func (sh *shadow) close() {
	sh.once.Do(func() { close(sh.done) })
	sh.wg.Wait()
}

// ReloadShadow reloads the shadow candidate, calling observe with the
// outcome; without a candidate it does nothing. A candidate that does not
// load keeps the previous one evaluating, as for the serving policy.
func (s *Point) ReloadShadow(ctx context.Context, observe func(engine.ReloadResult, error)) (engine.ReloadResult, error) {
	if s.shadow == nil {
		return engine.ReloadResult{}, nil
	}
	res, err := s.shadow.policy.ReloadObserved(ctx, observe)
	if err == nil && res.Changed {
		s.shadow.reloaded()
	}
	return res, err
}

// ShadowStatus is the shadow candidate's load status, nil without one.
func (s *Point) ShadowStatus() *engine.Status {
	if s.shadow == nil {
		return nil
	}
	st := s.shadow.policy.Status()
	return &st
}

// Close stops shadow evaluation. Call it after the last Decide and before
// closing the decision log.
func (s *Point) Close() {
	if s.shadow != nil {
		s.shadow.close()
	}
}
