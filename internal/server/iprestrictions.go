package server

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/strictjson"
)

// GET /v1/services/{service}/ip-restrictions: a service's API IP restriction
// setting, {"default": [...], "apis": {"<endpoint>": [...]}} (admins only;
// 401 and 403 exactly as for keys).
func (s *Server) handleGetIPRestrictions(c *gin.Context) {
	r, err := s.keys.GetIPRestrictions(c.Request.Context(), bearer(c), c.Param("service"))
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	c.JSON(http.StatusOK, r)
}

// PUT /v1/services/{service}/ip-restrictions replaces the whole setting. The
// network policy validates it: entries (422 naming each), the plan (403
// naming it) and the plan's entries per API (422 with limit). With
// ?dryRun=true the same decision is answered and nothing is written: a
// client (the console) learns whether the write would be allowed before
// anyone edits the setting.
func (s *Server) handlePutIPRestrictions(c *gin.Context) {
	dry, ok := s.dryRun(c)
	if !ok {
		return
	}
	var body keystore.IPRestrictions
	if _, ok := s.decodeBody(c, nil, &body, strictjson.Rules{}); !ok {
		return
	}
	if dry {
		ms, ok := s.members(c)
		if !ok {
			return
		}
		r, err := ms.PreviewIPRestrictions(c.Request.Context(), bearer(c), c.Param("service"), body)
		if err != nil {
			s.storeProblem(c, err)
			return
		}
		c.JSON(http.StatusOK, r)
		return
	}
	r, err := s.keys.PutIPRestrictions(c.Request.Context(), bearer(c), c.Param("service"), body)
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	c.JSON(http.StatusOK, r)
}
