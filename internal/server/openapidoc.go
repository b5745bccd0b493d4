package server

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/internal/server/openapi"
)

// handleOpenAPI serves the OpenAPI document of this API, the same for
// every caller: it describes the endpoints, never any state.
func (s *Server) handleOpenAPI(c *gin.Context) {
	c.Header("Cache-Control", "no-cache")
	c.Data(http.StatusOK, "application/json", openapi.Document())
}
