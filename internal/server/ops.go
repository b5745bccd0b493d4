package server

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/engine"
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
// compiles; the watcher and POST /v1/policies/reload call it.
func (s *Server) ReloadPolicies(ctx context.Context) (engine.ReloadResult, error) {
	res, err := s.policy.Reload(ctx)
	result := "ok"
	switch {
	case err != nil:
		result = "error"
	case !res.Changed:
		result = "unchanged"
	}
	s.metrics.observeReload("policies", result, res.Duration, s.policy.Revision())
	return res, err
}

// ReloadData re-reads services and members from data/; a malformed edit
// leaves the previous data serving.
func (s *Server) ReloadData(ctx context.Context) error {
	start := time.Now()
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
		s.log.InfoContext(ctx, "data reloaded", "took", time.Since(start))
	}
	s.metrics.observeReload("data", result, time.Since(start), s.policy.Revision())
	return err
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
	if b.LastReloadError != "" || b.Data.LastError != "" {
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
