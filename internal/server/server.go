// Package server is keygate's HTTP face: the decision endpoints that services
// and gateways call, the key-management API for service admins, and the
// operational endpoints (health, policy status, metrics).
//
// The server decides nothing itself. It parses and validates a request into
// a decision.Request, asks the decision point (internal/decision: the key
// looked up by the SHA-256 of the presented secret, the policy input, the
// decision cache, the decision log, shadow evaluation) and answers what the
// policy decided, counted in its metrics. Any evaluation failure is answered
// as a deny.
package server

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/decision"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/strictjson"
)

// Decider evaluates policy entrypoints; *engine.Engine implements it.
type Decider = decision.Decider

// KeyStore is what the server needs of the key store; *keystore.Store
// implements it.
type KeyStore interface {
	KeyRefBySecretHash(h [32]byte) (keystore.KeyRef, bool)
	Generation() uint64
	Service(id string) (keystore.Service, bool)
	KeyCounts() map[string]int
	ReloadData(ctx context.Context) error
	CreateKey(ctx context.Context, token, service string, spec keystore.KeySpec) (keystore.Created, error)
	GetKey(ctx context.Context, token, service, id string) (keystore.Key, error)
	ListKeys(ctx context.Context, token, service string) ([]keystore.Key, error)
	UpdateKey(ctx context.Context, token, service, id string, spec keystore.KeySpec) (keystore.Updated, error)
	RotateKey(ctx context.Context, token, service, id string) (keystore.Created, error)
	DeleteKey(ctx context.Context, token, service, id string) error
	IPRestrictions(service string) (*keystore.IPRestrictions, uint64, bool)
	GetIPRestrictions(ctx context.Context, token, service string) (keystore.IPRestrictions, error)
	PutIPRestrictions(ctx context.Context, token, service string, settings keystore.IPRestrictions) (keystore.IPRestrictions, error)
	ImportKey(ctx context.Context, token, service string, spec keystore.KeySpec, secret string) (keystore.Key, bool, error)
}

var (
	_ Decider  = (*engine.Engine)(nil)
	_ KeyStore = (*keystore.Store)(nil)
)

// Options configure a Server.
type Options struct {
	// MaxBodyBytes bounds request bodies; 1 MiB when zero.
	MaxBodyBytes int64
	// DecisionLog receives one entry per decision; nil disables it.
	DecisionLog *decision.DecisionLog
	// Logger for access and error logs; slog.Default() when nil.
	Logger *slog.Logger
	// ForwardAuthHeaders is the header convention /v1/forward-auth reads:
	// ForwardAuto (default), ForwardNginx, ForwardTraefik or ForwardEnvoy.
	ForwardAuthHeaders string
	// CacheEntries bounds the decision cache; 0 means 100,000 and a
	// negative value disables the cache.
	CacheEntries int
	// Shadow evaluates a candidate policy beside the serving one; off
	// when Shadow.Policy is nil.
	Shadow decision.ShadowOptions
	// ReadyMaxStaleness: /health answers 503 when a shared key store's index
	// is older than this (0: DefaultReadyMaxStaleness; negative: never).
	ReadyMaxStaleness time.Duration
	// MaxStaleness: decisions fail closed with 503 store_stale when a shared
	// key store's index is older than this (0: never; before the first load
	// they always do). Use DefaultMaxStaleness for the default.
	MaxStaleness time.Duration
	// TrustedProxies are the peers whose client-address header
	// /v1/forward-auth believes (--trusted-proxies); empty trusts none, and
	// the peer's own address is the client's.
	TrustedProxies []netip.Prefix
	// Console serves the key management console under /console/; nil
	// leaves /console/ unrouted (404).
	Console http.Handler
	// LegacyHeaders accepts microCMS's old key headers (X-API-KEY,
	// X-WRITE-API-KEY, X-GLOBAL-DRAFT-KEY) on the content API decisions, a
	// migration aid (--legacy-headers); off, they are ignored.
	LegacyHeaders bool
}

// Server serves keygate's HTTP API.
type Server struct {
	policy  Decider
	keys    KeyStore
	log     *slog.Logger
	metrics *Metrics
	core    *decision.Point
	ids     *decision.IDSource
	maxBody int64
	started time.Time
	router  *gin.Engine
	dataSt  dataStatus
	history reloadHistory
	// fwdHeaders is the forward-auth header convention.
	fwdHeaders string
	// storeSt is keys as a StoreStatuser, nil when it is not one.
	storeSt    StoreStatuser
	maxStale   time.Duration
	readyStale time.Duration
	keyBufs    *decision.Buffers
	// scanners are the request bodies' scanners (decodeBody).
	scanners sync.Pool
	// trustedProxies: see Options.TrustedProxies.
	trustedProxies []netip.Prefix
	legacyHeaders  bool
	console        http.Handler
}

// New returns a Server that decides with policy and looks keys up in keys.
func New(policy Decider, keys KeyStore, metrics *Metrics, opts Options) *Server {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		policy:  policy,
		keys:    keys,
		log:     log.With("component", "server"),
		metrics: metrics,
		ids:     decision.NewIDSource(),
		maxBody: opts.MaxBodyBytes,
		started: time.Now(),
	}
	s.fwdHeaders = opts.ForwardAuthHeaders
	s.storeSt, _ = keys.(StoreStatuser)
	s.maxStale = opts.MaxStaleness
	s.readyStale = opts.ReadyMaxStaleness
	if s.readyStale == 0 {
		s.readyStale = DefaultReadyMaxStaleness
	}
	s.trustedProxies = opts.TrustedProxies
	s.legacyHeaders = opts.LegacyHeaders
	s.console = opts.Console
	s.keyBufs = decision.NewBuffers()
	s.scanners.New = func() any { return new(strictjson.Scanner) }
	s.core = decision.New(policy, keys, decision.Options{
		DecisionLog: opts.DecisionLog, Logger: s.log, CacheEntries: opts.CacheEntries, Shadow: opts.Shadow,
		LegacyHeaders: opts.LegacyHeaders, Stale: s.storeStale, Buffers: s.keyBufs, IDs: s.ids, Registerer: metrics.reg,
		CacheHits: metrics.cacheHits, CacheMisses: metrics.cacheMisses,
	})
	metrics.useCache(s.core)
	s.router = s.routes()
	return s
}

// putBuf returns a scratch buffer to the pool.
func (s *Server) putBuf(buf *[]byte, b []byte) { s.keyBufs.Put(buf, b) }

// decide asks the decision point and counts the decision.
func (s *Server) decide(ctx context.Context, r *decision.Request) decision.Decision {
	d, o := s.core.Decide(ctx, r)
	s.metrics.observeDecision(r.API(), &d, o.Err, o.Took)
	return d
}

// Handler returns the HTTP handler serving every route.
func (s *Server) Handler() http.Handler { return s.router }

// routes lists every route of the API in one place.
func (s *Server) routes() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.ForwardedByClientIP = false
	// keygate trusts no proxy for the client address: it uses the address
	// only to restrict the reload endpoint to loopback callers, and a
	// forwarded header must never turn a remote caller into a local one.
	_ = r.SetTrustedProxies(nil)
	r.Use(s.accessLog, s.recovery)
	r.NoRoute(func(c *gin.Context) {
		s.problem(c, http.StatusNotFound, "not_found", "No such route: "+c.Request.URL.Path)
	})
	r.NoMethod(func(c *gin.Context) {
		// Envoy forwards the original method, whatever it is (PROPFIND,
		// a custom token); the router knows only the standard ones. A
		// forward-auth request always gets a decision: 200, 401 or 403.
		if p := c.Request.URL.Path; p == forwardAuthPath || strings.HasPrefix(p, forwardAuthPath+"/") {
			s.handleForwardAuth(c)
			return
		}
		s.problem(c, http.StatusMethodNotAllowed, "method_not_allowed", c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})

	r.POST("/v1/decide", s.handleDecide)
	r.Any("/v1/forward-auth", s.handleForwardAuth)
	r.Any("/v1/forward-auth/*rest", s.handleForwardAuth)

	// Every GET route answers HEAD too, with the GET's status and headers
	// and no body (net/http drops the body of an answer to HEAD): load
	// balancers check health with HEAD.
	// The key-management routes: their path and query reach a store.
	svc := r.Group("/v1/services/:service", s.storableRequest)
	keys := svc.Group("/keys")
	keys.POST("", s.handleCreateKey)
	getAndHead(keys, "", s.handleListKeys)
	getAndHead(keys, "/:id", s.handleGetKey)
	keys.PUT("/:id", s.handleUpdateKey)
	keys.DELETE("/:id", s.handleDeleteKey)
	keys.POST("/:id/rotate", s.handleRotateKey)
	getAndHead(svc, "/audit", s.handleAudit)
	getAndHead(svc, "/ip-restrictions", s.handleGetIPRestrictions)
	svc.PUT("/ip-restrictions", s.handlePutIPRestrictions)
	svc.POST("/legacy-keys", s.handleImportLegacy)

	getAndHead(r, "/v1/me", s.handleMe)
	if s.console != nil {
		getAndHead(r, "/console", consoleSlash)
		getAndHead(r, "/console/*path", gin.WrapH(s.console))
	}

	getAndHead(r, "/health", s.handleHealth)
	getAndHead(r, "/v1/policies", s.handlePolicies)
	getAndHead(r, "/v1/policies/history", s.handlePolicyHistory)
	r.POST("/v1/policies/reload", s.handleReload)
	getAndHead(r, "/metrics", gin.WrapH(s.metrics.Handler()))
	getAndHead(r, "/v1/openapi.json", s.handleOpenAPI)
	return r
}

// consoleSlash answers /console with a redirect to the console's page,
// console/. The Location is relative, resolved against the address the
// browser asked for: behind a reverse proxy serving keygate under a prefix
// (/kg/console) it stays under the prefix, where the router's own redirect
// to an absolute /console/ would leave it.
func consoleSlash(c *gin.Context) {
	loc := "console/"
	if q := c.Request.URL.RawQuery; q != "" {
		loc += "?" + q
	}
	c.Header("Location", loc)
	c.Status(http.StatusMovedPermanently)
}

func getAndHead(r gin.IRoutes, path string, h gin.HandlerFunc) {
	r.GET(path, h)
	r.HEAD(path, h)
}
