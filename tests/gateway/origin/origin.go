// Package origin is a demo content origin: a stand-in for the microCMS content API and management
// API that sits behind a gateway (nginx auth_request, Traefik ForwardAuth, Envoy ext_authz) which
// asks keygate about every request.
//
// The origin does no authentication of its own. It trusts the visibility headers the gateway copies
// from keygate's forward-auth answer (X-Keygate-Drafts, X-Keygate-Closed, X-Keygate-Draft-Key,
// X-Keygate-Filter-On, …) and shows what keygate's decision means for the content:
//
//   - lists contain published contents always, drafts only with drafts=true, closed contents only
//     with closed=true;
//   - a single draft is served with drafts=true, or with draftKey=true and the right draftKey value;
//   - filters and q= on a content that is both published and in draft match its published values
//     when filterOn=published (microCMS's rule), even when the draft version is what is shown.
//
// Every answer echoes what the origin saw as X-Echo-* response headers (each X-Keygate-* request
// header as X-Echo-Keygate-*, plus method, URI, host, body size and whether an API key reached the
// origin), so tests and curl users can check what the gateway forwarded.
//
// This trust is only sound when the gateway overwrites those headers on every request; the
// gateway's nginx configuration does, and the end-to-end tests check that a client cannot inject them.
package origin

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Header names the origin reads. The gateway sets them from keygate's forward-auth answer.
const (
	HeaderDrafts   = "X-Keygate-Drafts"
	HeaderClosed   = "X-Keygate-Closed"
	HeaderDraftKey = "X-Keygate-Draft-Key"
	HeaderFilterOn = "X-Keygate-Filter-On"
	HeaderAPIKey   = "X-Microcms-Api-Key"
)

// Echo header names the origin writes on every answer.
const (
	EchoMethod     = "X-Echo-Method"
	EchoURI        = "X-Echo-Uri"
	EchoHost       = "X-Echo-Host"
	EchoAPI        = "X-Echo-Api"
	EchoAPIKeySeen = "X-Echo-Api-Key-Seen"
	EchoBodyBytes  = "X-Echo-Body-Bytes"
	echoPrefix     = "X-Echo-"
	keygatePrefix  = "X-Keygate-"
)

// ManagementHostSuffix marks a request for the management API (microCMS: {service}.microcms-management.io).
const ManagementHostSuffix = ".microcms-management.io"

const jsonContentType = "application/json; charset=utf-8"

// Fields are the editable values of one version of a blog content.
type Fields struct {
	Title    string `json:"title"`
	Category string `json:"category"`
}

// Blog is one content of the demo list API "blogs". A content has a published version, a draft
// version, or both; Closed marks a content whose publication ended (公開終了).
type Blog struct {
	ID        string
	DraftKey  string
	Published *Fields
	Draft     *Fields
	Closed    bool
}

// Status is the microCMS status of the content: PUBLISH, DRAFT, PUBLISH_AND_DRAFT or CLOSED.
func (b Blog) Status() string {
	switch {
	case b.Closed:
		return "CLOSED"
	case b.Published != nil && b.Draft != nil:
		return "PUBLISH_AND_DRAFT"
	case b.Draft != nil:
		return "DRAFT"
	default:
		return "PUBLISH"
	}
}

// DemoBlogs returns the demo contents: one of each status. The published-and-draft content has a
// different category and title in each version, so filtering on published values is observable.
func DemoBlogs() []Blog {
	return []Blog{
		{ID: "published-1", Published: &Fields{Title: "Hello keygate", Category: "news"}},
		{ID: "draft-1", DraftKey: "dk-draft-1", Draft: &Fields{Title: "Unreleased feature", Category: "tech"}},
		{
			ID: "pubdraft-1", DraftKey: "dk-pubdraft-1",
			Published: &Fields{Title: "Pricing (old)", Category: "news"},
			Draft:     &Fields{Title: "Pricing (renewed)", Category: "tech"},
		},
		{ID: "closed-1", Published: &Fields{Title: "Campaign 2023", Category: "news"}, Closed: true},
	}
}

// Visibility is what the gateway told the origin a request may see.
type Visibility struct {
	Drafts   bool
	Closed   bool
	DraftKey bool
	FilterOn string
}

// VisibilityFrom reads the visibility headers; anything but "true" is false, so a missing header
// never widens what a request sees.
func VisibilityFrom(h http.Header) Visibility {
	return Visibility{
		Drafts:   h.Get(HeaderDrafts) == "true",
		Closed:   h.Get(HeaderClosed) == "true",
		DraftKey: h.Get(HeaderDraftKey) == "true",
		FilterOn: h.Get(HeaderFilterOn),
	}
}

// Origin serves the demo content and management APIs. It is safe for concurrent use.
type Origin struct {
	log        *slog.Logger
	blogs      []Blog
	content    *http.ServeMux
	management *http.ServeMux
	created    atomic.Int64
	now        time.Time
}

// New returns an origin serving DemoBlogs, a contact API accepting writes, the object API "site"
// and the management API routes.
func New(log *slog.Logger) *Origin {
	o := &Origin{
		log:        log.With("component", "origin"),
		blogs:      DemoBlogs(),
		content:    http.NewServeMux(),
		management: http.NewServeMux(),
		now:        time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	o.routes()
	return o
}

// routes lists every route of both APIs.
func (o *Origin) routes() {
	c := o.content
	c.HandleFunc("GET /api/v1/blogs", o.listBlogs)
	c.HandleFunc("GET /api/v1/blogs/{id}", o.getBlog)
	c.HandleFunc("GET /api/v1/contact", o.listContact)
	c.HandleFunc("GET /api/v1/site", o.getSite)
	for _, ep := range []string{"blogs", "contact", "site"} {
		c.HandleFunc("POST /api/v1/"+ep, o.write(http.StatusCreated))
		c.HandleFunc("PUT /api/v1/"+ep+"/{id}", o.write(http.StatusCreated))
		c.HandleFunc("PATCH /api/v1/"+ep+"/{id}", o.write(http.StatusOK))
		c.HandleFunc("DELETE /api/v1/"+ep+"/{id}", o.write(http.StatusAccepted))
	}
	c.HandleFunc("PATCH /api/v1/site", o.write(http.StatusOK))
	c.HandleFunc("/", notFound)

	m := o.management
	m.HandleFunc("GET /api/v1/contents/{endpoint}", o.mgmtListContents)
	m.HandleFunc("GET /api/v1/contents/{endpoint}/{id}", o.mgmtGetContent)
	m.HandleFunc("PATCH /api/v1/contents/{endpoint}/{id}/status", o.write(http.StatusOK))
	m.HandleFunc("PATCH /api/v1/contents/{endpoint}/{id}/createdBy", o.write(http.StatusOK))
	m.HandleFunc("GET /api/v1/media", o.mgmtMedia)
	m.HandleFunc("GET /api/v2/media", o.mgmtMedia)
	m.HandleFunc("POST /api/v1/media", o.write(http.StatusCreated))
	m.HandleFunc("DELETE /api/v2/media", o.write(http.StatusOK))
	m.HandleFunc("GET /api/v1/members", o.mgmtMembers)
	m.HandleFunc("GET /api/v1/members/{id}", o.mgmtMembers)
	m.HandleFunc("GET /api/v1/apis", o.mgmtAPIs)
	m.HandleFunc("GET /api/v1/apis/{endpoint}", o.mgmtAPIs)
	m.HandleFunc("GET /api/v1/service", o.mgmtService)
	m.HandleFunc("/", notFound)
}

// ServeHTTP echoes what the origin saw and dispatches on the host: management API hosts end in
// ManagementHostSuffix, everything else is the content API.
func (o *Origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	}
	api := "content"
	mux := o.content
	if isManagementHost(r.Host) {
		api, mux = "management", o.management
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
	if err != nil {
		writeMessage(w, http.StatusBadRequest, "Cannot read the request body.")
		return
	}
	r.Body = io.NopCloser(strings.NewReader(string(body)))

	h := w.Header()
	h.Set(EchoMethod, r.Method)
	h.Set(EchoURI, r.RequestURI)
	h.Set(EchoHost, r.Host)
	h.Set(EchoAPI, api)
	h.Set(EchoAPIKeySeen, strconv.FormatBool(r.Header.Get(HeaderAPIKey) != ""))
	h.Set(EchoBodyBytes, strconv.Itoa(len(body)))
	for name, values := range r.Header {
		if rest, ok := strings.CutPrefix(name, keygatePrefix); ok && len(values) > 0 {
			h.Set(echoPrefix+"Keygate-"+rest, values[0])
		}
	}
	o.log.Debug("request", "api", api, "method", r.Method, "uri", r.RequestURI,
		"drafts", r.Header.Get(HeaderDrafts), "closed", r.Header.Get(HeaderClosed),
		"draftKey", r.Header.Get(HeaderDraftKey), "keyId", r.Header.Get("X-Keygate-Key-Id"))
	mux.ServeHTTP(w, r)
}

func isManagementHost(host string) bool {
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	return strings.HasSuffix(strings.ToLower(host), ManagementHostSuffix)
}

// item renders one version of a content the way the microCMS content API does.
func (o *Origin) item(b Blog, f Fields) map[string]any {
	ts := o.now.Format(time.RFC3339)
	m := map[string]any{
		"id": b.ID, "createdAt": ts, "updatedAt": ts, "revisedAt": ts,
		"title": f.Title, "category": f.Category,
	}
	if b.Published != nil {
		m["publishedAt"] = ts
	}
	return m
}

// listed reports whether a list request with visibility v contains b, which version it shows, and
// which values filters and q= match against.
func listed(b Blog, v Visibility) (shown, matched Fields, ok bool) {
	switch b.Status() {
	case "PUBLISH":
		return *b.Published, *b.Published, true
	case "CLOSED":
		if !v.Closed {
			return Fields{}, Fields{}, false
		}
		return *b.Published, *b.Published, true
	case "DRAFT":
		if !v.Drafts {
			return Fields{}, Fields{}, false
		}
		return *b.Draft, *b.Draft, true
	default: // PUBLISH_AND_DRAFT
		shown = *b.Published
		if v.Drafts {
			shown = *b.Draft
		}
		matched = shown
		if v.FilterOn == "published" {
			matched = *b.Published
		}
		return shown, matched, true
	}
}

func (o *Origin) listBlogs(w http.ResponseWriter, r *http.Request) {
	v := VisibilityFrom(r.Header)
	q := r.URL.Query()
	match, err := parseFilters(q.Get("filters"))
	if err != nil {
		o.log.Debug("bad filters", "error", err)
		writeMessage(w, http.StatusBadRequest, "Invalid filters.")
		return
	}
	search := strings.ToLower(q.Get("q"))
	contents := []map[string]any{}
	for _, b := range o.blogs {
		shown, matched, ok := listed(b, v)
		if !ok || !match(matched) {
			continue
		}
		if search != "" && !strings.Contains(strings.ToLower(matched.Title), search) {
			continue
		}
		contents = append(contents, o.item(b, shown))
	}
	writeList(w, contents, q)
}

func (o *Origin) getBlog(w http.ResponseWriter, r *http.Request) {
	v := VisibilityFrom(r.Header)
	id := r.PathValue("id")
	i := slices.IndexFunc(o.blogs, func(b Blog) bool { return b.ID == id })
	if i < 0 {
		writeMessage(w, http.StatusNotFound, "Content is not found.")
		return
	}
	b := o.blogs[i]
	draftKeyOK := v.DraftKey && b.DraftKey != "" && r.URL.Query().Get("draftKey") == b.DraftKey
	switch b.Status() {
	case "PUBLISH":
		writeJSON(w, http.StatusOK, o.item(b, *b.Published))
	case "CLOSED":
		if !v.Closed {
			writeMessage(w, http.StatusNotFound, "Content is not found.")
			return
		}
		writeJSON(w, http.StatusOK, o.item(b, *b.Published))
	case "DRAFT":
		if !v.Drafts && !draftKeyOK {
			writeMessage(w, http.StatusNotFound, "Content is not found.")
			return
		}
		writeJSON(w, http.StatusOK, o.item(b, *b.Draft))
	default: // PUBLISH_AND_DRAFT
		if v.Drafts || draftKeyOK {
			writeJSON(w, http.StatusOK, o.item(b, *b.Draft))
			return
		}
		writeJSON(w, http.StatusOK, o.item(b, *b.Published))
	}
}

func (o *Origin) listContact(w http.ResponseWriter, r *http.Request) {
	writeList(w, []map[string]any{}, r.URL.Query())
}

func (o *Origin) getSite(w http.ResponseWriter, _ *http.Request) {
	ts := o.now.Format(time.RFC3339)
	writeJSON(w, http.StatusOK, map[string]any{
		"createdAt": ts, "updatedAt": ts, "publishedAt": ts, "revisedAt": ts,
		"siteName": "keygate demo", "description": "An object-type API behind nginx and keygate.",
	})
}

// write answers a content or management write the way microCMS does (POST/PUT 201 with the id,
// PATCH 200 with the id, DELETE 202 without a body). Bodies must be JSON when present.
func (o *Origin) write(status int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			writeMessage(w, http.StatusBadRequest, "Cannot read the request body.")
			return
		}
		if len(body) > 0 && !strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/") && !json.Valid(body) {
			writeMessage(w, http.StatusBadRequest, "Invalid JSON body.")
			return
		}
		if status == http.StatusAccepted {
			w.WriteHeader(status)
			return
		}
		id := r.PathValue("id")
		if id == "" {
			id = fmt.Sprintf("created-%d", o.created.Add(1))
		}
		writeJSON(w, status, map[string]string{"id": id})
	}
}

func (o *Origin) mgmtListContents(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("endpoint") != "blogs" {
		writeList(w, []map[string]any{}, r.URL.Query())
		return
	}
	contents := []map[string]any{}
	for _, b := range o.blogs {
		f := b.Published
		if f == nil {
			f = b.Draft
		}
		item := o.item(b, *f)
		item["status"] = []string{b.Status()}
		contents = append(contents, item)
	}
	writeList(w, contents, r.URL.Query())
}

func (o *Origin) mgmtGetContent(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	i := slices.IndexFunc(o.blogs, func(b Blog) bool { return b.ID == id })
	if r.PathValue("endpoint") != "blogs" || i < 0 {
		writeMessage(w, http.StatusNotFound, "Content is not found.")
		return
	}
	b := o.blogs[i]
	f := b.Published
	if f == nil {
		f = b.Draft
	}
	item := o.item(b, *f)
	item["status"] = []string{b.Status()}
	writeJSON(w, http.StatusOK, item)
}

func (o *Origin) mgmtMedia(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"media":      []map[string]any{{"url": "https://images.example.com/demo/keygate.png", "width": 640, "height": 480}},
		"totalCount": 1,
	})
}

func (o *Origin) mgmtMembers(w http.ResponseWriter, r *http.Request) {
	if id := r.PathValue("id"); id != "" {
		writeJSON(w, http.StatusOK, map[string]string{"id": id, "name": "Demo member"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"members": []map[string]string{{"id": "member-1", "name": "Demo member"}}})
}

func (o *Origin) mgmtAPIs(w http.ResponseWriter, r *http.Request) {
	apis := []map[string]string{
		{"endpoint": "blogs", "apiType": "LIST"},
		{"endpoint": "contact", "apiType": "LIST"},
		{"endpoint": "site", "apiType": "OBJECT"},
	}
	if ep := r.PathValue("endpoint"); ep != "" {
		i := slices.IndexFunc(apis, func(a map[string]string) bool { return a["endpoint"] == ep })
		if i < 0 {
			writeMessage(w, http.StatusNotFound, "API is not found.")
			return
		}
		writeJSON(w, http.StatusOK, apis[i])
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"apis": apis})
}

func (o *Origin) mgmtService(w http.ResponseWriter, r *http.Request) {
	service, _, _ := strings.Cut(r.Host, ".")
	writeJSON(w, http.StatusOK, map[string]string{"serviceDomain": service, "name": "keygate demo"})
}

func notFound(w http.ResponseWriter, _ *http.Request) {
	writeMessage(w, http.StatusNotFound, "Not found.")
}

// parseFilters parses the subset of microCMS's filters syntax the demo needs:
// field[equals]value, field[not_equals]value and field[contains]value joined by [and].
func parseFilters(s string) (func(Fields) bool, error) {
	if s == "" {
		return func(Fields) bool { return true }, nil
	}
	type cond struct{ field, op, value string }
	var conds []cond
	for part := range strings.SplitSeq(s, "[and]") {
		field, rest, ok1 := strings.Cut(part, "[")
		op, value, ok2 := strings.Cut(rest, "]")
		if !ok1 || !ok2 || (field != "title" && field != "category") {
			return nil, fmt.Errorf("filter %q: want title|category[op]value", part)
		}
		switch op {
		case "equals", "not_equals", "contains":
		default:
			return nil, fmt.Errorf("filter %q: unsupported operator %q", part, op)
		}
		conds = append(conds, cond{field, op, value})
	}
	return func(f Fields) bool {
		for _, c := range conds {
			got := f.Title
			if c.field == "category" {
				got = f.Category
			}
			ok := false
			switch c.op {
			case "equals":
				ok = got == c.value
			case "not_equals":
				ok = got != c.value
			case "contains":
				ok = strings.Contains(got, c.value)
			}
			if !ok {
				return false
			}
		}
		return true
	}, nil
}

func writeList(w http.ResponseWriter, contents []map[string]any, q map[string][]string) {
	limit, offset := 10, 0
	if v, err := strconv.Atoi(first(q["limit"])); err == nil && v >= 0 {
		limit = v
	}
	if v, err := strconv.Atoi(first(q["offset"])); err == nil && v >= 0 {
		offset = v
	}
	total := len(contents)
	page := contents[min(offset, total):min(offset+limit, total)]
	writeJSON(w, http.StatusOK, map[string]any{"contents": page, "totalCount": total, "offset": offset, "limit": limit})
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func writeMessage(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"message": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", jsonContentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
