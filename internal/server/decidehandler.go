package server

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/internal/decision"
	"github.com/keygate/keygate/internal/strictjson"
)

func (s *Server) handleDecide(c *gin.Context) {
	var b decision.Body
	buf := s.keyBufs.Get()
	body, ok := s.decodeBody(c, (*buf)[:0], &b, strictjson.Rules{ExactIn: "query"})
	if !ok {
		s.putBuf(buf, body)
		return
	}
	r, field, why := b.Request()
	if field != "" {
		s.putBuf(buf, body)
		s.problem(c, http.StatusBadRequest, "invalid_field", "Field "+field+" "+why)
		return
	}
	d := s.decide(c.Request.Context(), &r)
	out := decision.AppendDecision(body[:0], &d)
	c.Data(http.StatusOK, "application/json; charset=utf-8", out)
	s.putBuf(buf, out)
}
