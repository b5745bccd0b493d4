package server

import (
	"context"

	"github.com/keygate/keygate/engine"
)

// ReloadShadow reloads the shadow candidate (its directory changed, or its
// bundle is polled). A candidate that does not load keeps the previous one
// evaluating, as for the serving policy.
func (s *Server) ReloadShadow(ctx context.Context) (engine.ReloadResult, error) {
	return s.core.ReloadShadow(ctx, func(res engine.ReloadResult, err error) {
		result := "ok"
		switch {
		case err != nil:
			result = "error"
		case !res.Changed:
			result = "unchanged"
		}
		s.metrics.reloads.WithLabelValues("shadow", result).Inc()
	})
}

// ShadowStatus is the shadow candidate's load status, nil without one.
func (s *Server) ShadowStatus() *engine.Status { return s.core.ShadowStatus() }

// Close stops background work (shadow evaluation). Call it after the HTTP
// server has shut down and before closing the decision log.
func (s *Server) Close() { s.core.Close() }
