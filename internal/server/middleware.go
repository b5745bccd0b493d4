package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/internal/text"
)

// The middleware every route runs behind: the access log and panic
// recovery (server.routes installs them).

// maxLogText bounds client text written to the access log (a path, a
// method).
const maxLogText = 256

// accessLog logs every request except the decision endpoints, whose
// answers the decision log records already (one line per decision, off the
// hot path).
func (s *Server) accessLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	path := c.Request.URL.Path
	if path == "/v1/decide" || strings.HasPrefix(path, "/v1/forward-auth") || path == "/metrics" || path == "/health" {
		return
	}
	level := slog.LevelInfo
	if c.Writer.Status() >= 500 {
		level = slog.LevelError
	}
	// Every text field is the client's: bounded here, where it is
	// written, so that a request of a long path or method cannot make
	// the line long. A cut path keeps its length beside it.
	attrs := [...]slog.Attr{
		slog.String("method", text.Bounded(c.Request.Method, maxLogText)), slog.String("path", text.Bounded(path, maxLogText)),
		slog.Int("status", c.Writer.Status()), slog.Float64("took_ms", millis(time.Since(start))),
		slog.String("remote", text.Bounded(c.Request.RemoteAddr, maxLogText)), slog.Int("pathBytes", len(path)),
	}
	n := len(attrs)
	if len(path) <= maxLogText {
		n-- // pathBytes only for a cut path
	}
	s.log.LogAttrs(c.Request.Context(), level, "request", attrs[:n]...)
}

// recovery turns a panic into a 500 problem and a log line with the stack.
func (s *Server) recovery(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			s.log.ErrorContext(c.Request.Context(), "panic", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			if !c.Writer.Written() {
				s.problem(c, http.StatusInternalServerError, "internal", "Internal error.")
			}
		}
	}()
	c.Next()
}
