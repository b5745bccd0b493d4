// Package engine embeds Open Policy Agent and answers keygate's policy
// questions.
//
// An Engine compiles a directory of Rego modules and policy data files into
// an immutable [PolicySet]: strict-mode compiler, in-memory data store and one
// prepared query per entrypoint. Decisions are evaluated against the current
// set, which is replaced by a single atomic pointer store when a reload
// compiles; a reload that fails leaves the previous set serving. A request
// therefore sees either the old or the new policy in full, never a mixture.
//
// The engine fails closed: an evaluation error, a timeout, a cancelled context
// or an undefined or malformed decision is reported as an error, and callers
// must treat every error as a deny.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Entrypoints are the decision rules keygate asks for. Each must evaluate to
// an object; see policies/README.md for the input and decision contract.
const (
	Content    = "data.content.decision"
	Management = "data.management.decision"
	Keys       = "data.keys.decision"
	// Network decides reads and writes of API IP restriction settings.
	Network = "data.network.decision"
	// LegacyMigration maps an old microCMS key (X-API-KEY, …) to its
	// configuration; LegacySelection chooses the key that judges a request
	// made with the old headers.
	LegacyMigration = "data.legacy.migration"
	LegacySelection = "data.legacy.selection"
	// KeysViolations is the keys policy's rule of a key configuration's
	// violations (an array), which data.keys.decision reports for every
	// create and update. It is optional: a policy set that defines it
	// gets it prepared (a seeding asks it directly, once per distinct
	// configuration); one that does not is asked data.keys.decision.
	KeysViolations = "data.keys.violations"
)

// OptionalEntrypoints lists the rules every policy set prepares when it
// defines them, besides the entrypoints it must define. They are not
// decisions: [PolicySet.Evaluate] answers them, and Status.CacheKeys does
// not list them (no decision cache keys on them).
func OptionalEntrypoints() []string { return []string{KeysViolations} }

// DefaultEntrypoints lists the entrypoints prepared by [New] when
// Options.Entrypoints is empty.
func DefaultEntrypoints() []string {
	return []string{Content, Management, Keys, Network, LegacyMigration, LegacySelection}
}

// ErrUndefined reports that an entrypoint produced no decision. Callers treat
// it, like every other evaluation error, as a deny.
var ErrUndefined = errors.New("decision is undefined")

// ErrNotObject reports that an entrypoint produced something other than an
// object.
var ErrNotObject = errors.New("decision is not an object")

// ErrUnknownEntrypoint reports a Decide call for an entrypoint that was not
// prepared.
var ErrUnknownEntrypoint = errors.New("unknown entrypoint")

// Options configure an Engine.
type Options struct {
	// Entrypoints to prepare; DefaultEntrypoints() when empty. A policy set
	// that does not define every entrypoint is rejected.
	Entrypoints []string
	// Timeout bounds one evaluation; zero means no bound beyond the caller's
	// context.
	Timeout time.Duration
	// Logger receives reload results; slog.Default() when nil.
	Logger *slog.Logger
	// OnReload, when set, receives every load attempt's outcome (the
	// initial load included), after the swap: the hook for an audit trail
	// of policy changes. It runs on the reloading goroutine, serialised.
	OnReload func(ReloadEvent)
	// StartUnavailable lets the engine start when the first load fails:
	// until a load succeeds it serves a stand-in whose every decision is
	// a deny with status 503 and code UnavailableCode, and Status reports
	// no revision. Without it, a failed first load fails NewFromSource.
	StartUnavailable bool
}

// ReloadEvent is one load attempt, for an audit trail of policy changes.
type ReloadEvent struct {
	Time     time.Time     `json:"time"`
	Source   string        `json:"source"`
	From     string        `json:"from"`
	To       string        `json:"to"`
	Result   string        `json:"result"`
	Error    string        `json:"error,omitempty"`
	Files    []string      `json:"files,omitempty"`
	Duration time.Duration `json:"-"`
}

// Engine evaluates decisions against the current policy set and swaps in new
// sets atomically. It is safe for concurrent use.
type Engine struct {
	dir         string
	source      Source
	entrypoints []string
	timeout     time.Duration
	log         *slog.Logger
	onReload    func(ReloadEvent)

	current atomic.Pointer[PolicySet]
	status  atomic.Pointer[Status]

	reloadMu sync.Mutex // serialises Reload; readers never take it
}

// Status describes the outcome of the most recent load attempt.
type Status struct {
	// Revision is the revision serving now (empty before the first success).
	Revision string `json:"revision"`
	// Files are the files of the serving revision, relative to the directory.
	Files []string `json:"files"`
	// LoadedAt is when the serving revision was swapped in.
	LoadedAt time.Time `json:"loadedAt"`
	// LastAttempt is when a load was last attempted.
	LastAttempt time.Time `json:"lastAttempt"`
	// LastResult is "ok", "unchanged" or "error".
	LastResult string `json:"lastResult"`
	// LastError is the error of the last attempt, empty when it succeeded.
	LastError string `json:"lastError,omitempty"`
	// LastErrors lists compile errors with file and line, when known.
	LastErrors []LoadError `json:"lastErrors,omitempty"`
	// Source names where policies come from: "directory <dir>" or
	// "bundle <url>".
	Source string `json:"source,omitempty"`
	// CacheKeys are, per entrypoint of the serving revision, the input
	// paths a decision cache keys on, or why it caches nothing or keys on
	// the whole input (see Project). Recomputed on every reload.
	CacheKeys []*Projection `json:"cacheKeys,omitempty"`
}

// New returns an Engine for the policies in dir and loads them once. It
// fails when the initial policy set does not compile: a server must not start
// without a policy.
func New(ctx context.Context, dir string, opts Options) (*Engine, error) {
	e, err := NewFromSource(ctx, DirSource(dir), opts)
	if e != nil {
		e.dir = dir
	}
	return e, err
}

// NewFromSource returns an Engine for the policies src yields and loads them
// once; like [New], it fails when the initial load fails.
func NewFromSource(ctx context.Context, src Source, opts Options) (*Engine, error) {
	e := &Engine{
		source:      src,
		entrypoints: opts.Entrypoints,
		timeout:     opts.Timeout,
		log:         opts.Logger,
		onReload:    opts.OnReload,
	}
	if len(e.entrypoints) == 0 {
		e.entrypoints = DefaultEntrypoints()
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	e.log = e.log.With("component", "engine")
	if _, err := e.Reload(ctx); err != nil {
		if !opts.StartUnavailable {
			return nil, err
		}
		stand, serr := unavailableSet(ctx, e.entrypoints)
		if serr != nil {
			return nil, errors.Join(err, serr)
		}
		// Only if no load has succeeded meanwhile.
		e.current.CompareAndSwap(nil, stand)
	}
	return e, nil
}

// Dir returns the policy directory the engine loads; empty for another
// source.
func (e *Engine) Dir() string { return e.dir }

// Current returns the policy set serving now.
func (e *Engine) Current() *PolicySet { return e.current.Load() }

// Revision returns the revision serving now.
func (e *Engine) Revision() string { return e.current.Load().Revision }

// Status returns the outcome of the most recent load attempt.
func (e *Engine) Status() Status {
	if s := e.status.Load(); s != nil {
		return *s
	}
	return Status{}
}

// ReloadResult is what one Reload did.
type ReloadResult struct {
	// Revision is the revision serving after the reload.
	Revision string
	// Changed reports whether a new revision was swapped in.
	Changed bool
	// Duration is how long loading and compiling took.
	Duration time.Duration
}

// Reload compiles the policy directory into a new set and swaps it in when it
// compiled and differs from the serving one. On failure the serving set is
// kept and the error is recorded in Status.
func (e *Engine) Reload(ctx context.Context) (ReloadResult, error) {
	return e.ReloadObserved(ctx, nil)
}

// ReloadObserved is Reload, calling observe with the outcome after the
// new set (if any) serves but before Status reports the outcome: whoever
// sees the result in Status can rely on what observe recorded (a metric,
// a history entry) being there already.
func (e *Engine) ReloadObserved(ctx context.Context, observe func(ReloadResult, error)) (ReloadResult, error) {
	if observe == nil {
		observe = func(ReloadResult, error) {}
	}
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()

	start := time.Now()
	prev := e.current.Load()
	set, err := e.source.Load(ctx, e.entrypoints)
	if e.onReload != nil {
		defer func() { e.onReload(reloadEvent(start, e.source.String(), prev, e.current.Load(), e.Status())) }()
	}
	st := Status{LastAttempt: start, Source: e.source.String()}
	if prev != nil && prev.Revision != "" { // not the stand-in of StartUnavailable
		st.Revision, st.Files, st.LoadedAt, st.CacheKeys = prev.Revision, prev.Files, prev.LoadedAt, prev.Projections()
	}
	if err != nil {
		st.LastResult = "error"
		st.LastError = err.Error()
		st.LastErrors = loadErrors(err)
		res := ReloadResult{Revision: st.Revision, Duration: time.Since(start)}
		observe(res, err)
		e.status.Store(&st)
		e.log.LogAttrs(ctx, slog.LevelError, "policy reload rejected",
			slog.String("source", e.source.String()), slog.String("serving", st.Revision), slog.String("error", err.Error()))
		return res, err
	}
	res := ReloadResult{Revision: set.Revision, Duration: time.Since(start)}
	if prev != nil && prev.Revision == set.Revision {
		st.LastResult = "unchanged"
		observe(res, nil)
		e.status.Store(&st)
		e.log.LogAttrs(ctx, slog.LevelInfo, "policy reload unchanged",
			slog.String("revision", set.Revision), slog.Float64("took_ms", float64(res.Duration.Microseconds())/1e3))
		return res, nil
	}
	e.current.Store(set)
	res.Changed = true
	st.Revision, st.Files, st.LoadedAt, st.LastResult = set.Revision, set.Files, set.LoadedAt, "ok"
	st.CacheKeys = set.Projections()
	observe(res, nil)
	e.status.Store(&st)
	from := ""
	if prev != nil {
		from = prev.Revision
	}
	e.log.LogAttrs(ctx, slog.LevelInfo, "policy loaded",
		slog.String("revision", set.Revision), slog.String("previous", from),
		slog.Int("files", len(set.Files)), slog.Float64("took_ms", float64(res.Duration.Microseconds())/1e3))
	return res, nil
}

// Projection returns the serving revision and, from the same policy set,
// what entrypoint's decisions depend on in the input (nil for an unknown
// entrypoint).
func (e *Engine) Projection(entrypoint string) (string, *Projection) {
	set := e.current.Load()
	return set.Revision, set.Projection(entrypoint)
}

// Decision is one evaluated decision object and the revision that made it.
type Decision struct {
	// Value is the decision object; never nil when err is nil.
	Value ast.Object
	// Revision is the policy revision that evaluated it.
	Revision string
}

// Decide evaluates entrypoint with input against the serving policy set. Any
// error, including an undefined or non-object decision, a timeout and a
// cancelled context, means deny; the returned Decision still carries the
// revision consulted.
func (e *Engine) Decide(ctx context.Context, entrypoint string, input ast.Value) (Decision, error) {
	return e.current.Load().Decide(ctx, entrypoint, input, e.timeout)
}

// Timeout is the bound of one evaluation (zero: the caller's context only).
func (e *Engine) Timeout() time.Duration { return e.timeout }

// Decide evaluates entrypoint with input against this policy set; see
// [Engine.Decide].
func (p *PolicySet) Decide(ctx context.Context, entrypoint string, input ast.Value, timeout time.Duration) (Decision, error) {
	d := Decision{Revision: p.Revision}
	v, err := p.Evaluate(ctx, entrypoint, input, timeout)
	if err != nil {
		return d, err
	}
	obj, ok := v.(ast.Object)
	if !ok {
		return d, fmt.Errorf("evaluate %s: %w (got %s)", entrypoint, ErrNotObject, ast.ValueName(v))
	}
	d.Value = obj
	return d, nil
}

// Has reports whether entrypoint is prepared in this set: every required
// entrypoint, and each optional one the policy defines.
func (p *PolicySet) Has(entrypoint string) bool {
	_, ok := p.queries[entrypoint]
	return ok
}

// Evaluate evaluates entrypoint with input against this policy set and
// returns its value, whatever its type (Decide requires an object). Like
// Decide it fails closed: an undefined value, an evaluation error, a
// timeout or a cancelled context is an error.
func (p *PolicySet) Evaluate(ctx context.Context, entrypoint string, input ast.Value, timeout time.Duration) (ast.Value, error) {
	pq, ok := p.queries[entrypoint]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownEntrypoint, entrypoint)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("evaluate %s: %w", entrypoint, err)
	}
	// Cancellation without OPA's per-evaluation watcher goroutine and
	// without a derived context: one cancel flag, flipped by a timer for the
	// timeout and by a callback registered on ctx.
	cancel := topdown.NewCancel()
	if timeout > 0 {
		t := time.AfterFunc(timeout, cancel.Cancel)
		defer t.Stop()
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, cancel.Cancel)
		defer stop()
	}
	vc := getFlatCache()
	defer putFlatCache(vc)
	rs, err := pq.Eval(ctx,
		rego.EvalParsedInput(input),
		rego.EvalExternalCancel(cancel),
		rego.EvalMetrics(p.metrics),
		rego.EvalVirtualCache(vc),
		// Early exit saves work for rules that iterate; keygate's
		// decisions are a few complete rules, where its bookkeeping
		// costs more than it saves (BenchmarkDecide).
		rego.EvalEarlyExit(false),
	)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("evaluate %s: %w", entrypoint, errors.Join(cerr, err))
		}
		if cancel.Cancelled() {
			return nil, fmt.Errorf("evaluate %s: %w after %s", entrypoint, context.DeadlineExceeded, timeout)
		}
		return nil, fmt.Errorf("evaluate %s: %w", entrypoint, err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, fmt.Errorf("evaluate %s: %w", entrypoint, ErrUndefined)
	}
	// Results stay ast.Values (see keepAST): no JSON conversion on this path.
	v, ok := rs[0].Expressions[0].Value.(ast.Value)
	if !ok {
		return nil, fmt.Errorf("evaluate %s: %w (got %T)", entrypoint, ErrNotObject, rs[0].Expressions[0].Value)
	}
	return v, nil
}

func reloadEvent(start time.Time, source string, prev, cur *PolicySet, st Status) ReloadEvent {
	ev := ReloadEvent{Time: start, Source: source, Result: st.LastResult, Error: st.LastError, Duration: time.Since(start)}
	if prev != nil {
		ev.From = prev.Revision
	}
	if cur != nil {
		ev.To, ev.Files = cur.Revision, cur.Files
	}
	return ev
}
