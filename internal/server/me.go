package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/open-policy-agent/opa/v1/ast"
)

// MemberStore is what /v1/me, the key counts and dry runs need of the key
// store beyond KeyStore; *keystore.Store implements it. A KeyStore that is
// not one answers those routes 404.
type MemberStore interface {
	MemberByToken(token string) (keystore.Member, bool)
	KeyCount(service string) int
	PreviewCreate(ctx context.Context, token, service string, spec keystore.KeySpec) (keystore.Created, error)
	PreviewUpdate(ctx context.Context, token, service, id string, spec keystore.KeySpec) (keystore.Updated, error)
	PreviewIPRestrictions(ctx context.Context, token, service string, settings keystore.IPRestrictions) (keystore.IPRestrictions, error)
}

var _ MemberStore = (*keystore.Store)(nil)

// members returns the key store as a MemberStore, or answers 404.
func (s *Server) members(c *gin.Context) (MemberStore, bool) {
	ms, ok := s.keys.(MemberStore)
	if !ok {
		s.problem(c, http.StatusNotFound, "not_found", "No such route: "+c.Request.URL.Path)
	}
	return ms, ok
}

// meBody is the answer of GET /v1/me: the member behind the bearer token and
// the services it belongs to.
type meBody struct {
	Member   string      `json:"member"`
	Services []meService `json:"services"`
}

type meService struct {
	ID   string    `json:"id"`
	Plan string    `json:"plan"`
	Role string    `json:"role"`
	Keys keyCounts `json:"keys"`
	// APIs are the service's content API endpoints where data lists them.
	APIs []string `json:"apis"`
}

// keyCounts is a service's number of keys against its plan's limit.
type keyCounts struct {
	Count int `json:"count"`
	Limit int `json:"limit"`
}

// GET /v1/me: who the bearer token is, for a client (the console) that must
// show a member its services, its role in each and the key counts. 401 for
// a token that matches no member; it reveals nothing about other members.
func (s *Server) handleMe(c *gin.Context) {
	ms, ok := s.members(c)
	if !ok {
		return
	}
	m, ok := ms.MemberByToken(bearer(c))
	if !ok {
		c.Header("WWW-Authenticate", `Bearer realm="keygate"`)
		s.problem(c, http.StatusUnauthorized, "unauthenticated", "The bearer token matches no member.")
		return
	}
	c.Header("Cache-Control", "no-store")
	body := meBody{Member: m.ID, Services: []meService{}}
	if svc, ok := s.keys.Service(m.Service); ok {
		n := ms.KeyCount(svc.ID)
		limit, err := s.keyLimit(c.Request.Context(), m, svc, n)
		if err != nil {
			s.keyLimitProblem(c, err)
			return
		}
		apis := svc.APIs
		if apis == nil {
			apis = []string{}
		}
		body.Services = append(body.Services, meService{ID: svc.ID, Plan: svc.Plan, Role: m.Role,
			Keys: keyCounts{Count: n, Limit: limit}, APIs: apis})
	}
	c.JSON(http.StatusOK, body)
}

// keyLimit is the plan's key limit as the keys policy computes it (from the
// plan data it reads, data.plans): the limit member of a "list" decision
// about svc. The limit does not depend on the verdict, so an editor, whom
// the policy refuses the list, still learns the count it is shown against.
func (s *Server) keyLimit(ctx context.Context, m keystore.Member, svc keystore.Service, count int) (int, error) {
	req := keystore.KeyRequest{Action: keystore.ActionList, Member: &m,
		Service: keystore.ServiceInput{ID: svc.ID, Plan: svc.Plan, KeyCount: count}}
	in, err := ast.InterfaceToValue(req)
	if err != nil {
		return 0, fmt.Errorf("keys input: %w", err)
	}
	d, err := s.policy.Decide(ctx, engine.Keys, in)
	if err != nil {
		return 0, fmt.Errorf("keys decision: %w", err)
	}
	t := d.Value.Get(ast.InternedTerm("limit"))
	if t == nil {
		if code := d.Value.Get(ast.InternedTerm("code")); code != nil && code.Value.Compare(ast.String(engine.UnavailableCode)) == 0 {
			return 0, errPolicyUnavailable
		}
		return 0, fmt.Errorf("keys decision has no limit")
	}
	n, ok := t.Value.(ast.Number)
	if !ok {
		return 0, fmt.Errorf("keys decision: limit is %s, not a number", ast.ValueName(t.Value))
	}
	limit, ok := n.Int()
	if !ok {
		return 0, fmt.Errorf("keys decision: limit %s is not an integer", n)
	}
	return limit, nil
}

// errPolicyUnavailable: the keys policy has not loaded yet (keygate started
// before its first policy), so no plan limit is known.
var errPolicyUnavailable = errors.New("no policy is loaded yet")

// keyLimitProblem answers a failed keyLimit: 503 policy_unavailable before
// the first policy loaded (as every decision then is), else a 500.
func (s *Server) keyLimitProblem(c *gin.Context, err error) {
	if errors.Is(err, errPolicyUnavailable) {
		s.problem(c, http.StatusServiceUnavailable, engine.UnavailableCode, "No policy is loaded yet.")
		return
	}
	s.log.ErrorContext(c.Request.Context(), "key limit evaluation failed", "err", err)
	s.problem(c, http.StatusInternalServerError, "policy_error", "The plan's key limit could not be evaluated.")
}

// dryRun reads the dryRun query parameter of a key write: true asks for the
// decision without the write. Anything but true, false or absent is a 400.
func (s *Server) dryRun(c *gin.Context) (dry, ok bool) {
	switch v, sent := c.GetQuery("dryRun"); {
	case !sent || v == "false":
		return false, true
	case v == "true":
		return true, true
	default:
		s.problem(c, http.StatusBadRequest, "invalid_query", "dryRun must be true or false.")
		return false, false
	}
}

// previewBody answers a dry run: the key as the write would make it (a
// create's has no id) and the policy's advice; never a secret.
type previewBody struct {
	Key      keystore.Key       `json:"key"`
	Warnings []keystore.Warning `json:"warnings"`
	DryRun   bool               `json:"dryRun"`
}

// previewCreate answers POST …/keys?dryRun=true with the status a create
// would have (201, as Kubernetes answers a dry-run create) and nothing
// written; a refusal is the create's own 4xx.
func (s *Server) previewCreate(c *gin.Context, spec keystore.KeySpec) {
	ms, ok := s.members(c)
	if !ok {
		return
	}
	out, err := ms.PreviewCreate(c.Request.Context(), bearer(c), c.Param("service"), spec)
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusCreated, previewBody{Key: out.Key, Warnings: orEmpty(out.Warnings), DryRun: true})
}

// previewUpdate answers PUT …/keys/{id}?dryRun=true (see previewCreate).
func (s *Server) previewUpdate(c *gin.Context, spec keystore.KeySpec) {
	ms, ok := s.members(c)
	if !ok {
		return
	}
	out, err := ms.PreviewUpdate(c.Request.Context(), bearer(c), c.Param("service"), c.Param("id"), spec)
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, previewBody{Key: out.Key, Warnings: orEmpty(out.Warnings), DryRun: true})
}
