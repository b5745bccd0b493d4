package server

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/keystore"
)

// dataStatus records the last reload of data/.
type dataStatus struct {
	mu          sync.Mutex
	lastAttempt time.Time
	lastResult  string
	lastError   string
}

// DataReload is the outcome of the last reload of data/.
type DataReload struct {
	LastAttempt time.Time `json:"lastAttempt,omitzero"`
	LastResult  string    `json:"lastResult,omitempty"`
	LastError   string    `json:"lastError,omitempty"`
}

func (d *dataStatus) get() DataReload {
	d.mu.Lock()
	defer d.mu.Unlock()
	return DataReload{LastAttempt: d.lastAttempt, LastResult: d.lastResult, LastError: d.lastError}
}

// ReloadPolicies recompiles the policy directory and swaps it in when it
// compiles; the watcher and POST /v1/policies/reload call it. The reload is
// counted and recorded in the history before /health and /v1/policies
// report it, so that whoever sees it there finds it counted too.
func (s *Server) ReloadPolicies(ctx context.Context) (engine.ReloadResult, error) {
	from := s.policy.Revision()
	return s.policy.ReloadObserved(ctx, func(res engine.ReloadResult, err error) {
		result := "ok"
		switch {
		case err != nil:
			result = "error"
		case !res.Changed:
			result = "unchanged"
		}
		if result != "unchanged" {
			s.history.add("policies", s.policySource(), from, res.Revision, result, err)
		}
		s.metrics.observeReload("policies", result, res.Duration, res.Revision)
	})
}

// ReloadData re-reads services and members from data/; a malformed edit
// leaves the previous data serving.
func (s *Server) ReloadData(ctx context.Context) error {
	start := time.Now()
	digest, digested := s.keys.(dataDigester)
	var before [32]byte
	if digested {
		before = digest.DataDigest()
	}
	err := s.keys.ReloadData(ctx)
	s.dataSt.mu.Lock()
	s.dataSt.lastAttempt = start
	if err != nil {
		s.dataSt.lastResult, s.dataSt.lastError = "error", err.Error()
	} else {
		s.dataSt.lastResult, s.dataSt.lastError = "ok", ""
	}
	s.dataSt.mu.Unlock()
	result := "ok"
	if err != nil {
		result = "error"
		s.log.ErrorContext(ctx, "data reload rejected", "error", err.Error())
	} else {
		s.log.InfoContext(ctx, "data reloaded", "took_ms", millis(time.Since(start)))
	}
	s.metrics.observeReload("data", result, time.Since(start), s.policy.Revision())
	rev := s.policy.Revision()
	source := "files"
	if s.storeSt != nil && s.storeSt.Status().Kind == keystore.StorePostgres {
		source = keystore.StorePostgres // services and members live in the database
	}
	// Like a policy reload that found nothing changed, a data reload that
	// left services and members as they were is not history.
	if !digested || err != nil || digest.DataDigest() != before {
		s.history.add("data", source, rev, rev, result, err)
	}
	return err
}

// dataDigester is a KeyStore that can say whether a data reload changed
// its services and members; *keystore.Store is one.
type dataDigester interface {
	DataDigest() [32]byte
}

var _ dataDigester = (*keystore.Store)(nil)

// millis is d in milliseconds (to the microsecond), the unit of every
// duration in keygate's logs.
func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

// policySource names where policies come from: "files" (a directory),
// unless the policy source names itself (a Source method).
func (s *Server) policySource() string {
	if src, ok := s.policy.(interface{ Source() string }); ok {
		return src.Source()
	}
	return "files"
}

// historySize bounds the reload history: the newest reloads are kept in
// memory, the oldest dropped, and all of it is lost on restart (the log has
// every reload too).
const historySize = 100

// ReloadEvent is one policy or data reload in /v1/policies/history.
type ReloadEvent struct {
	At   time.Time `json:"at"`
	Kind string    `json:"kind"` // "policies" or "data"
	// Source is where it was loaded from: "files" (a directory), or what
	// the policy source names itself ("bundle"); "postgres" for data kept
	// in a shared store.
	Source string `json:"source"`
	// From and To are the policy revisions before and after (equal for a
	// data reload, and for a refused policy edit: the last good serves).
	From   string `json:"fromRevision"`
	To     string `json:"toRevision"`
	Result string `json:"result"` // "ok" or "error"
	Error  string `json:"error,omitempty"`
}

// reloadHistory is a ring of the last historySize reloads. A reload that
// found nothing changed (a poll) is not recorded.
type reloadHistory struct {
	mu   sync.Mutex
	ring [historySize]ReloadEvent
	n    int // events recorded (the ring holds the last min(n, historySize))
}

func (h *reloadHistory) add(kind, source, from, to, result string, err error) {
	ev := ReloadEvent{At: time.Now().UTC(), Kind: kind, Source: source, From: from, To: to, Result: result}
	if err != nil {
		ev.Error = err.Error()
	}
	h.mu.Lock()
	h.ring[h.n%historySize] = ev
	h.n++
	h.mu.Unlock()
}

// newest returns the recorded reloads, newest first.
func (h *reloadHistory) newest() []ReloadEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]ReloadEvent, 0, min(h.n, historySize))
	for i := h.n - 1; i >= 0 && i >= h.n-historySize; i-- {
		out = append(out, h.ring[i%historySize])
	}
	return out
}

type historyBody struct {
	Reloads []ReloadEvent `json:"reloads"`
	// Capacity is how many reloads the in-memory history keeps.
	Capacity int `json:"capacity"`
}

// handlePolicyHistory serves the reloads of policies and data, newest first
// (operations side, like /v1/policies).
func (s *Server) handlePolicyHistory(c *gin.Context) {
	c.JSON(http.StatusOK, historyBody{Reloads: s.history.newest(), Capacity: historySize})
}

type healthBody struct {
	Status          string     `json:"status"`
	PolicyRevision  string     `json:"policyRevision"`
	LastReload      string     `json:"lastReload"`
	LastReloadAt    time.Time  `json:"lastReloadAt,omitzero"`
	LastReloadError string     `json:"lastReloadError,omitempty"`
	Data            DataReload `json:"data"`
	Uptime          string     `json:"uptime"`
	// Store is the key store: kind, revisions, staleness.
	Store *storeHealth `json:"store,omitempty"`
}

// handleHealth answers 200 once a policy is loaded. A rejected reload does
// not make keygate unhealthy — the last good policy serves — but the body
// shows the error so that an operator sees it.
func (s *Server) handleHealth(c *gin.Context) {
	st := s.policy.Status()
	b := healthBody{
		Status: "ok", PolicyRevision: st.Revision, LastReload: st.LastResult,
		LastReloadAt: st.LastAttempt, LastReloadError: st.LastError,
		Data: s.dataSt.get(), Uptime: time.Since(s.started).Round(time.Second).String(),
	}
	code := http.StatusOK
	if st.Revision == "" {
		b.Status, code = "no policy loaded", http.StatusServiceUnavailable
	}
	if code == http.StatusOK && (b.LastReloadError != "" || b.Data.LastError != "") {
		b.Status = "degraded: serving the last good policy and data"
	}
	var notReady string
	if b.Store, notReady = s.storeReadiness(); notReady != "" && code == http.StatusOK {
		b.Status, code = notReady, http.StatusServiceUnavailable
	}
	c.JSON(code, b)
}

type policiesBody struct {
	engine.Status
	Data DataReload `json:"data"`
	// Shadow is the shadow candidate's load status, when one evaluates.
	Shadow *engine.Status `json:"shadow,omitempty"`
}

func (s *Server) handlePolicies(c *gin.Context) {
	c.JSON(http.StatusOK, policiesBody{Status: s.policy.Status(), Data: s.dataSt.get(), Shadow: s.ShadowStatus()})
}

// handleReload reloads policies and data now and answers with the result:
// the fallback for file systems that deliver no change events. It is
// restricted to loopback callers: reloading affects every service, so no
// service admin token may trigger it, and an operator with shell access to
// the host (or a sidecar) is exactly who needs it.
func (s *Server) handleReload(c *gin.Context) {
	host, _, err := net.SplitHostPort(c.Request.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		s.problem(c, http.StatusForbidden, "forbidden", "Policy reload is only accepted from the loopback interface.")
		return
	}
	// The reload runs to its end even if the caller hangs up: a half-done
	// compile would be recorded as a failed reload.
	ctx := context.WithoutCancel(c.Request.Context())
	_, perr := s.ReloadPolicies(ctx)
	derr := s.ReloadData(ctx)
	body := policiesBody{Status: s.policy.Status(), Data: s.dataSt.get()}
	if perr != nil || derr != nil {
		c.JSON(http.StatusUnprocessableEntity, body)
		return
	}
	c.JSON(http.StatusOK, body)
}
