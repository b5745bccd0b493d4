package decision

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/route"
	"github.com/keygate/keygate/internal/text"
	"github.com/open-policy-agent/opa/v1/ast"
)

// APIKeyHeader is the header carrying a content or management API key.
const APIKeyHeader = "X-MICROCMS-API-KEY"

// Visibility says which contents an allowed GET may see.
type Visibility struct {
	Published bool   `json:"published"`
	Drafts    bool   `json:"drafts"`
	Closed    bool   `json:"closed"`
	DraftKey  bool   `json:"draftKey"`
	FilterOn  string `json:"filterOn"`
}

// Decision is the answer of POST /v1/decide. Status and Message are what
// the content service should answer on a deny (microCMS's own status and
// text).
type Decision struct {
	DecisionID     string     `json:"decisionId"`
	Allow          bool       `json:"allow"`
	Status         int        `json:"status"`
	Code           string     `json:"code"`
	Message        string     `json:"message"`
	Permission     string     `json:"permission"`
	Endpoint       string     `json:"endpoint"`
	ContentID      string     `json:"contentId"`
	KeyID          string     `json:"keyId"`
	Visibility     Visibility `json:"visibility"`
	PolicyRevision string     `json:"policyRevision"`

	// matchedKeyID is the key the secret matched, even of another service
	// (then KeyID is empty): for the decision log, never for the answer.
	matchedKeyID string
	// matchedKeyRevision is that key's revision, for replay.
	matchedKeyRevision uint64
}

// Request is one question, whichever endpoint asked it.
type Request struct {
	service string
	api     string // "content" or "management"
	method  string
	path    string
	query   [][2]string
	secret  string
	// clientIP is the client's address for the IP restriction ("" when
	// unknown); decide drops it for a service that restricts nothing.
	clientIP string
	// legacy holds the old key headers of a content API request (nil when
	// none was sent); decide uses them only with --legacy-headers.
	legacy *legacyRequest
}

// The two APIs a decision is about.
const (
	APIContent    = "content"
	APIManagement = "management"
)

// API is the API the request is about: APIContent or APIManagement.
func (r *Request) API() string { return r.api }

// SetClientIP sets the client's address for the IP restriction ("" when
// unknown).
func (r *Request) SetClientIP(ip string) { r.clientIP = ip }

// Observed is what the server counts of a decision: the evaluation error
// it was answered for (nil for a policy's own answer) and how long it took.
type Observed struct {
	Err  error
	Took time.Duration
}

// Decide looks the key up, asks the policy (or the decision cache) and
// records the decision. It never fails: an evaluation error is a deny with
// status 503.
func (s *Point) Decide(ctx context.Context, r *Request) (Decision, Observed) {
	start := time.Now()
	entrypoint := engine.Content
	if r.api == APIManagement {
		entrypoint = engine.Management
	}
	// Read the policy revision and the key-store state (generation, cache
	// stamp) before any lookup: whatever is looked up after is at least as
	// new, so an entry cached under them is never older. The projection (what the entrypoint reads of the
	// input) comes with the revision, from the same policy set.
	revision, proj := s.policy.Projection(entrypoint)
	gen := s.keys.Generation()
	// The presented secret is hashed once: the key store looks keys up by
	// that hash, and the decision cache keys on it (never on the secret).
	// For one cache stamp a hash names at most one key, so equal hashes
	// mean equal key input.
	var secretHash [32]byte
	hasSecret := r.secret != ""
	if hasSecret {
		secretHash = sha256.Sum256([]byte(r.secret))
	}
	var stamp cacheStamp
	if s.cache != nil {
		var h *[32]byte
		if hasSecret {
			h = &secretHash
		}
		stamp = s.cache.stamp(gen, r.service, h)
	}
	// The client's address is part of the question only where the service
	// restricts addresses: elsewhere it changes nothing, and keeping it out
	// keeps one cache entry per question, not per client.
	ipr, iprRev, restricted := s.keys.IPRestrictions(r.service)
	if !restricted {
		r.clientIP = ""
	}
	view := newRequestView(r.api, r.method, r.path, r.clientIP, r.query)

	var out Decision
	var err error
	var table *cacheTable
	var ckey []byte
	hit := false
	// A stale shared key store answers 503 before the cache: a cached
	// allow may be of a key revoked since. Old key headers are judged
	// uncached (the cache key knows only X-MICROCMS-API-KEY).
	stale := s.stale()
	legacy := r.legacy != nil && s.legacyHeaders
	if s.cache != nil && !stale && !legacy && proj != nil && proj.Cacheable {
		if table = s.cache.table(revision); table != nil {
			buf := s.bufs.Get()
			ckey = appendCacheKey((*buf)[:0], s.names, proj, r, &view, hasSecret, &secretHash)
			out, hit = s.cache.get(table, ckey, stamp)
			defer func() { s.bufs.Put(buf, ckey) }()
		}
	}
	var key keystore.KeyRef
	var found bool
	var legacyHashes []legacyHash
	var legacyEntry *LegacyEntry
	if hit {
		s.cacheHits.Inc()
	} else if stale {
		out, err = staleDecision(revision), errStoreStale
	} else if legacy {
		s.cacheMisses.Inc()
		legacyHashes = r.legacy.hashes()
		out, legacyEntry, err = s.evaluateLegacy(ctx, s.policy, r, view.value(s.names), s.legacyKeys(legacyHashes), hasSecret,
			ipr, iprRev, true)
	} else {
		s.cacheMisses.Inc()
		if hasSecret {
			key, found = s.keys.KeyRefBySecretHash(secretHash)
		}
		out, err = s.evaluate(ctx, r, entrypoint, view.value(s.names), key, found, ipr, iprRev)
		// A question longer than maxCachedKey (a long path or query) is
		// answered but not remembered: the cache's bound is in entries,
		// and entries must stay small for that bound to bound memory.
		if err == nil && table != nil && out.PolicyRevision == table.revision && len(ckey) <= maxCachedKey {
			s.cache.put(table, ckey, out, stamp)
		}
	}
	// The content id is the server's parse of this request's path, never
	// the cached answer's: questions that differ only in it share a cache
	// entry when the policy does not read it.
	if err == nil {
		out.ContentID = echoContentID(r.api, view.route, out.Permission)
	}
	out.DecisionID = s.ids.Next()

	took := time.Since(start)
	if s.declog != nil || s.shadow != nil {
		e := DecisionEntry{
			Time: start, DecisionID: out.DecisionID, Service: r.service, KeyID: out.matchedKeyID,
			API: r.api, Method: r.method, Path: r.path, Allow: out.Allow, Status: out.Status,
			Code: out.Code, Message: out.Message, PolicyRevision: out.PolicyRevision, Latency: took,
			Endpoint: out.Endpoint, Permission: out.Permission, KeyRevision: out.matchedKeyRevision, Query: r.query, ClientIP: r.clientIP,
			Legacy: legacyEntry, NotAsked: stale,
		}
		if s.declog != nil {
			s.declog.Log(e)
		}
		// A stale store's 503 asked no policy: there is no question for a
		// candidate to compare.
		if s.shadow != nil && !stale {
			s.shadow.offer(r, hasSecret, &secretHash, legacyHashes, gen, &e)
		}
	}
	return out, Observed{Err: err, Took: took}
}

// evaluate builds the policy input and evaluates it with the serving
// policy.
func (s *Point) evaluate(ctx context.Context, r *Request, entrypoint string, req *ast.Term, key keystore.KeyRef, found bool,
	ipr *keystore.IPRestrictions, iprRev uint64) (Decision, error) {
	return s.evaluateWith(ctx, s.policy, r, entrypoint, req, key, found, ipr, iprRev, true)
}

// evaluateRequest evaluates r with policy exactly as decide asks the
// serving policy (a shadow or replay candidate): the entrypoint of its API,
// its request input (the client address only for a service that restricts
// addresses) and the service's IP restriction setting; the content id is
// echoed from the path.
func (s *Point) evaluateRequest(ctx context.Context, policy Decider, r *Request, key keystore.KeyRef, found, logErrors bool) (Decision, error) {
	entrypoint := engine.Content
	if r.api == APIManagement {
		entrypoint = engine.Management
	}
	ipr, iprRev, restricted := s.keys.IPRestrictions(r.service)
	clientIP := r.clientIP
	if !restricted {
		clientIP = ""
	}
	view := newRequestView(r.api, r.method, r.path, clientIP, r.query)
	out, err := s.evaluateWith(ctx, policy, r, entrypoint, view.value(s.names), key, found, ipr, iprRev, logErrors)
	if err == nil {
		out.ContentID = echoContentID(r.api, view.route, out.Permission)
	}
	return out, err
}

// evaluateLegacyRequest evaluates a content API request judged by its old
// key headers with policy exactly as decide asks the serving policy with
// --legacy-headers (a shadow or replay candidate); keys are the headers
// with the key each one matched, microcmsKey whether X-MICROCMS-API-KEY
// was sent too. The entry records the question and the header chosen.
func (s *Point) evaluateLegacyRequest(ctx context.Context, policy Decider, r *Request, keys []legacyKey, microcmsKey, logErrors bool) (Decision, *LegacyEntry, error) {
	ipr, iprRev, restricted := s.keys.IPRestrictions(r.service)
	clientIP := r.clientIP
	if !restricted {
		clientIP = ""
	}
	view := newRequestView(r.api, r.method, r.path, clientIP, r.query)
	out, le, err := s.evaluateLegacy(ctx, policy, r, view.value(s.names), keys, microcmsKey, ipr, iprRev, logErrors)
	if err == nil {
		out.ContentID = echoContentID(r.api, view.route, out.Permission)
	}
	return out, le, err
}

// evaluateWith builds the policy input and evaluates it with policy (the
// serving one, a shadow candidate or a replay candidate: the same input
// either way). logErrors logs an evaluation failure.
func (s *Point) evaluateWith(ctx context.Context, policy Decider, r *Request, entrypoint string, req *ast.Term, key keystore.KeyRef, found bool,
	ipr *keystore.IPRestrictions, iprRev uint64, logErrors bool) (Decision, error) {
	var keyIn ast.Value
	var out Decision
	if found {
		in := s.inputs.get(key)
		out.matchedKeyID, out.matchedKeyRevision = in.id, in.revision
		keyIn = in.value
		// The asking service learns the key's id only when the key is
		// its own: a key of another service stays anonymous (the
		// decision log still records it, for the audit trail).
		if in.service == r.service {
			out.KeyID = out.matchedKeyID
		}
	}
	var svc *ast.Term
	if sv, ok := s.keys.Service(r.service); ok {
		svc = s.services.get(s.names, &sv, ipr, iprRev)
	}
	d, err := policy.Decide(ctx, entrypoint, requestInput(s.names, svc, keyIn, req))
	out.PolicyRevision = d.Revision
	if err != nil && logErrors {
		s.log.ErrorContext(ctx, "decision failed closed", "api", r.api, "service", r.service, "error", err.Error())
	}
	if err != nil {
		out.Status, out.Code, out.Message = http.StatusServiceUnavailable, "policy_error", "Policy evaluation failed."
		out.Visibility.FilterOn = "published"
		return out, err
	}
	if err := fillDecision(s.names, &out, d.Value); err != nil {
		if logErrors {
			s.log.ErrorContext(ctx, "decision failed closed", "api", r.api, "service", r.service, "error", err.Error())
		}
		return out, err
	}
	return out, nil
}

// errMalformedDecision reports a decision object that breaks the decision
// contract (policies/README.md): allow or status of the wrong type, or an
// allow with an error status. It is answered like an evaluation error.
var errMalformedDecision = errors.New("malformed policy decision")

// fillDecision copies the policy's decision object into out, failing
// closed: only a boolean true "allow" with status 200 (or none) allows; a
// deny always carries a 4xx/5xx status, a code and a bounded message. A
// decision that breaks the contract is a 503 policy_error, reported as an
// error so that it is logged, counted and never cached.
func fillDecision(n *names, out *Decision, o ast.Object) error {
	allow, okAllow := boolField(o, n.allow)
	status, okStatus := intField(o, n.status)
	switch {
	case !okAllow:
		return malformed(out, "allow is not a boolean")
	case !okStatus:
		return malformed(out, "status is not an integer")
	case allow && status != 0 && status != http.StatusOK:
		// A policy that allows with an error status contradicts itself.
		return malformed(out, "allow with status "+strconv.Itoa(status))
	}
	out.Allow = allow
	out.Status = status
	out.Code = getString(o, n.code)
	out.Message = text.Bounded(getString(o, n.message), text.MaxMessageBytes)
	out.Permission = getString(o, n.permission)
	out.Endpoint = getString(o, n.endpoint)
	// These name parts of the request, which is at most maxPathBytes long:
	// anything longer did not come from it, and would travel in headers.
	if len(out.Permission) > maxPathBytes || len(out.Endpoint) > maxPathBytes {
		return malformed(out, "permission or endpoint longer than the request")
	}
	if vis, ok := getObject(o, n.visibility); ok && out.Allow {
		out.Visibility = Visibility{
			Published: getBool(vis, n.published),
			Drafts:    getBool(vis, n.drafts),
			Closed:    getBool(vis, n.closed),
			DraftKey:  getBool(vis, n.draftKey),
			FilterOn:  getString(vis, n.filterOn),
		}
	}
	if out.Visibility.FilterOn == "" {
		out.Visibility.FilterOn = "published"
	}
	if out.Allow {
		out.Status = http.StatusOK
		if !text.IsCode(out.Code) {
			out.Code = "allowed"
		}
		return nil
	}
	if out.Status < 400 || out.Status > 599 {
		// A deny must never look like success, nor carry a status a
		// proxy or client cannot interpret.
		out.Status, out.Code, out.Message = http.StatusForbidden, "denied", "Forbidden"
	}
	if !text.IsCode(out.Code) {
		out.Code = "denied"
	}
	if out.Message == "" {
		out.Message = http.StatusText(out.Status)
	}
	return nil
}

// malformed turns out into the answer to a decision that breaks the
// contract: a 503 with the stable code policy_error.
func malformed(out *Decision, why string) error {
	*out = Decision{
		matchedKeyID: out.matchedKeyID, KeyID: out.KeyID, PolicyRevision: out.PolicyRevision,
		Status: http.StatusServiceUnavailable, Code: "policy_error", Message: "Policy evaluation failed.",
		Visibility: Visibility{FilterOn: "published"},
	}
	return fmt.Errorf("%w: %s", errMalformedDecision, why)
}

// boolField reads an optional boolean: absent is false, and ok is false
// when the field is present with another type (null, "true", 1).
func boolField(o ast.Object, k *ast.Term) (v, ok bool) {
	t := o.Get(k)
	if t == nil {
		return false, true
	}
	b, ok := t.Value.(ast.Boolean)
	return ok && bool(b), ok
}

// intField reads an optional integer: absent is 0, and ok is false when
// the field is present but not an integer that fits an int.
func intField(o ast.Object, k *ast.Term) (v int, ok bool) {
	t := o.Get(k)
	if t == nil {
		return 0, true
	}
	n, isNum := t.Value.(ast.Number)
	if !isNum {
		return 0, false
	}
	return n.Int()
}

// echoContentID is the content id an answer carries: the server's parse of
// the path, not the policy's (which need not read it, so that the decision
// cache can answer every content id alike). A management answer names it
// only for a route the policy knows (one it found a permission for).
func echoContentID(api string, rt route.Route, permission string) string {
	if api == APIManagement && permission == "" {
		return ""
	}
	return rt.ContentID
}

func getBool(o ast.Object, k *ast.Term) bool {
	if t := o.Get(k); t != nil {
		b, ok := t.Value.(ast.Boolean)
		return ok && bool(b)
	}
	return false
}

func getString(o ast.Object, k *ast.Term) string {
	if t := o.Get(k); t != nil {
		if s, ok := t.Value.(ast.String); ok {
			return string(s)
		}
	}
	return ""
}

func getObject(o ast.Object, k *ast.Term) (ast.Object, bool) {
	if t := o.Get(k); t != nil {
		obj, ok := t.Value.(ast.Object)
		return obj, ok
	}
	return nil, false
}

// Body is the body of POST /v1/decide; forward-auth builds one from the
// proxied request.
type Body struct {
	Service string            `json:"service"`
	API     string            `json:"api"`
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Query   map[string]string `json:"query"`
	APIKey  *string           `json:"apiKey"`
	Headers map[string]string `json:"headers"`
	// ClientIP is the address of the client the calling service serves,
	// for the IP restriction.
	ClientIP string `json:"clientIp"`
}

const maxPathBytes = 8 << 10

// Bounds of the other fields of a decision request. Keys keygate issues
// are 43 characters; a secret over 1 KiB cannot be one.
const (
	maxHeaders          = 64
	maxHeaderNameBytes  = 256
	maxHeaderValueBytes = 8 << 10
	maxSecretBytes      = 1 << 10
	maxIPBytes          = 64
)

// maxQueryParams bounds the query parameters of one decision request: a
// content API request has a dozen at most, and the bound keeps the cost of
// an unauthenticated request small.
const maxQueryParams = 100

var errTooManyParams = errors.New("too many query parameters")

// Request validates the body and turns it into a decision request; on a
// malformed body it names the field and what is wrong with it.
func (b *Body) Request() (r Request, field, why string) {
	r.service = b.Service
	if r.service == "" {
		return r, "service", "is required."
	}
	// The service reaches the decision log, the cache key and the policy:
	// it has the grammar (and so the bound) of a service id in data/.
	if !IsServiceID(r.service) {
		return r, "service", "must be a service id: a lower-case DNS label of at most 63 characters."
	}
	switch b.API {
	case "", APIContent:
		r.api = APIContent
	case APIManagement:
		r.api = APIManagement
	default:
		return r, "api", `must be "content" or "management".`
	}
	if !isToken(b.Method) {
		return r, "method", "must be an HTTP method such as GET."
	}
	// Methods are case-sensitive (RFC 9110): "get" is not GET, and what
	// an unknown method gets is the policy's business (405).
	r.method = b.Method
	if b.Path == "" || b.Path[0] != '/' || len(b.Path) > maxPathBytes {
		return r, "path", "must be an absolute path such as /api/v1/blogs (at most 8 KiB)."
	}
	path, rawQuery, _ := strings.Cut(b.Path, "?")
	if p, err := url.PathUnescape(path); err == nil {
		path = p
	} else {
		return r, "path", "is not a valid URL path."
	}
	r.path = path
	var parsed [][2]string
	if rawQuery != "" {
		var err error
		if parsed, err = parseQuery(rawQuery, maxQueryParams); err != nil {
			return r, "path", "has a malformed query string or more than 100 parameters."
		}
	}
	if len(b.Query)+len(parsed) > maxQueryParams {
		return r, "query", "has more than 100 parameters."
	}
	queryBytes := 0
	for k, v := range b.Query {
		queryBytes += len(k) + len(v)
	}
	if queryBytes > maxPathBytes {
		return r, "query", "is larger than 8 KiB."
	}
	// The explicit query comes first: the first value of a parameter wins.
	r.query = make([][2]string, 0, len(b.Query)+len(parsed))
	for k, v := range b.Query {
		r.query = append(r.query, [2]string{k, v})
	}
	r.query = append(r.query, parsed...)
	if len(b.Headers) > maxHeaders {
		return r, "headers", "has more than 64 entries."
	}
	headerKey := false
	for k, v := range b.Headers {
		if len(k) > maxHeaderNameBytes || len(v) > maxHeaderValueBytes {
			return r, "headers", "has a name over 256 bytes or a value over 8 KiB."
		}
		if strings.EqualFold(k, APIKeyHeader) {
			// The body scan (duplicateKey) already refuses a header named
			// twice in any case; this keeps request() safe on its own.
			if headerKey {
				return r, "headers", "carries " + APIKeyHeader + " more than once."
			}
			r.secret, headerKey = v, true
		}
		if name := legacyHeaderName(k); name != "" && r.api == APIContent {
			if r.legacy == nil {
				r.legacy = &legacyRequest{values: make(map[string]string, 3)}
			}
			r.legacy.values[name] = v
		}
	}
	if b.APIKey != nil {
		// Two keys, one in apiKey and one in headers: which one counts
		// would be a guess.
		if headerKey {
			return r, "apiKey", "and headers." + APIKeyHeader + " are both set; send the key once."
		}
		r.secret = *b.APIKey
	}
	if b.ClientIP != "" {
		a, ok := ParseClientAddr(b.ClientIP)
		if !ok || len(b.ClientIP) > maxIPBytes {
			return r, "clientIp", "must be an IPv4 or IPv6 address."
		}
		r.clientIP = a.String()
	}
	if len(r.secret) > maxSecretBytes {
		if headerKey {
			return r, "headers", "carries an " + APIKeyHeader + " longer than 1 KiB: no key is."
		}
		return r, "apiKey", "is longer than 1 KiB: no key is."
	}
	return r, "", ""
}

// parseQuery keeps parameters in order so that the first value of a
// repeated parameter is the one the policy sees.
func parseQuery(raw string, limit int) ([][2]string, error) {
	var out [][2]string
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		if part == "" {
			continue
		}
		if len(out) == limit {
			return nil, errTooManyParams
		}
		k, v, _ := strings.Cut(part, "=")
		k, err := url.QueryUnescape(k)
		if err != nil {
			return nil, err
		}
		v, err = url.QueryUnescape(v)
		if err != nil {
			return nil, err
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

// isToken reports whether s is a non-empty RFC 9110 token (a method name).
func isToken(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// maxServiceIDBytes is a DNS label's length: service ids are DNS labels.
const maxServiceIDBytes = 63

// IsServiceID reports whether s is a service id: a lower-case DNS label of
// at most 63 bytes, [a-z0-9] at both ends and [a-z0-9-] between — the
// grammar data/services.json requires.
func IsServiceID(s string) bool {
	if s == "" || len(s) > maxServiceIDBytes || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			continue
		}
		return false
	}
	return true
}

// ParseClientAddr parses one address as a header or the decide body carries
// it ("" when it is none), unmapping IPv4-in-IPv6 so that 192.0.2.1 and
// ::ffff:192.0.2.1 are one client.
func ParseClientAddr(v string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(strings.TrimSpace(v))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
