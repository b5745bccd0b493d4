package server

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/strictjson"
)

// bearer returns the member token of the Authorization header ("" when
// absent: the policy then answers 401).
func bearer(c *gin.Context) string {
	h := c.GetHeader("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// createdBody is the answer of a create or a rotation: the secret is shown
// this once.
type createdBody struct {
	Key      keystore.Key       `json:"key"`
	Secret   string             `json:"secret"`
	Warnings []keystore.Warning `json:"warnings"`
}

type updatedBody struct {
	Key      keystore.Key       `json:"key"`
	Warnings []keystore.Warning `json:"warnings"`
}

// listBody is a service's keys and their number against the plan's limit
// (what microCMS's sidebar shows as "N / L").
type listBody struct {
	Keys  []keystore.Key `json:"keys"`
	Count int            `json:"count"`
	Limit int            `json:"limit"`
}

// readSpec decodes a create/PUT body. name is required; missing permission
// flags are false.
func (s *Server) readSpec(c *gin.Context) (keystore.KeySpec, bool) {
	var spec keystore.KeySpec
	if _, ok := s.decodeBody(c, nil, &spec, strictjson.Rules{}); !ok {
		return spec, false
	}
	if strings.TrimSpace(spec.Name) == "" {
		s.problem(c, http.StatusBadRequest, "invalid_field", "Field name is required.")
		return spec, false
	}
	return spec, true
}

func orEmpty(w []keystore.Warning) []keystore.Warning {
	if w == nil {
		return []keystore.Warning{}
	}
	return w
}

func (s *Server) handleCreateKey(c *gin.Context) {
	dry, ok := s.dryRun(c)
	if !ok {
		return
	}
	spec, ok := s.readSpec(c)
	if !ok {
		return
	}
	if dry {
		s.previewCreate(c, spec)
		return
	}
	ctx, ok := s.keyContext(c)
	if !ok {
		return
	}
	created, err := s.keys.CreateKey(ctx, bearer(c), c.Param("service"), spec)
	s.metrics.observeKeyWrite(keystore.ActionCreate, http.StatusCreated, err)
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	c.Header("Location", c.Request.URL.Path+"/"+created.Key.ID)
	c.Header("Cache-Control", "no-store")
	if created.Replayed {
		s.replayedSecret(c, http.StatusCreated, created)
		return
	}
	c.JSON(http.StatusCreated, createdBody{Key: created.Key, Secret: created.Secret, Warnings: orEmpty(created.Warnings)})
}

func (s *Server) handleListKeys(c *gin.Context) {
	keys, err := s.keys.ListKeys(c.Request.Context(), bearer(c), c.Param("service"))
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	if keys == nil {
		keys = []keystore.Key{}
	}
	body := listBody{Keys: keys, Count: len(keys)}
	// The list was allowed, so the token is an admin of a known service.
	if ms, ok := s.keys.(MemberStore); ok {
		m, _ := ms.MemberByToken(bearer(c))
		svc, _ := s.keys.Service(c.Param("service"))
		limit, err := s.keyLimit(c.Request.Context(), m, svc, len(keys))
		if err != nil {
			s.keyLimitProblem(c, err)
			return
		}
		body.Limit = limit
	}
	c.JSON(http.StatusOK, body)
}

func (s *Server) handleGetKey(c *gin.Context) {
	k, err := s.keys.GetKey(c.Request.Context(), bearer(c), c.Param("service"), c.Param("id"))
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	c.JSON(http.StatusOK, k)
}

func (s *Server) handleUpdateKey(c *gin.Context) {
	dry, ok := s.dryRun(c)
	if !ok {
		return
	}
	spec, ok := s.readSpec(c)
	if !ok {
		return
	}
	if dry {
		s.previewUpdate(c, spec)
		return
	}
	ctx, ok := s.keyContext(c)
	if !ok {
		return
	}
	up, err := s.keys.UpdateKey(ctx, bearer(c), c.Param("service"), c.Param("id"), spec)
	s.metrics.observeKeyWrite(keystore.ActionUpdate, http.StatusOK, err)
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	if up.Replayed {
		c.Header(replayedHeader, "true")
	}
	c.JSON(http.StatusOK, updatedBody{Key: up.Key, Warnings: orEmpty(up.Warnings)})
}

func (s *Server) handleRotateKey(c *gin.Context) {
	ctx, ok := s.keyContext(c)
	if !ok {
		return
	}
	created, err := s.keys.RotateKey(ctx, bearer(c), c.Param("service"), c.Param("id"))
	s.metrics.observeKeyWrite(keystore.ActionRotate, http.StatusOK, err)
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	if created.Replayed {
		s.replayedSecret(c, http.StatusOK, created)
		return
	}
	c.JSON(http.StatusOK, createdBody{Key: created.Key, Secret: created.Secret, Warnings: orEmpty(created.Warnings)})
}

func (s *Server) handleDeleteKey(c *gin.Context) {
	id := c.Param("id")
	ctx, ok := s.keyContext(c)
	if !ok {
		return
	}
	err := s.keys.DeleteKey(ctx, bearer(c), c.Param("service"), id)
	s.metrics.observeKeyWrite(keystore.ActionDelete, http.StatusNoContent, err)
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	s.core.ForgetKey(id)
	c.Status(http.StatusNoContent)
}

// replayedBody answers a create or rotation retried with the Idempotency-Key
// of a write already made: the key as it is now, and no secret (it was shown
// once, in the first answer).
type replayedBody struct {
	Key      keystore.Key       `json:"key"`
	Warnings []keystore.Warning `json:"warnings"`
	Replayed bool               `json:"replayed"`
	Message  string             `json:"message"`
}

func (s *Server) replayedSecret(c *gin.Context, status int, created keystore.Created) {
	c.Header(replayedHeader, "true")
	c.JSON(status, replayedBody{Key: created.Key, Warnings: orEmpty(created.Warnings), Replayed: true,
		Message: "A write with this Idempotency-Key was already made; this repeats its outcome. Its secret was shown once, " +
			"in the first answer: if it was lost, rotate the key."})
}
