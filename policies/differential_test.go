package policies_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/route"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
)

// update rewrites the corpus's expected decisions from the policies as they are now:
//
//	go test ./policies/ -run TestDifferential -update
//
// Only do that when a change of answers is intended, and say so in the commit: the diff of
// testdata/decisions.jsonl then lists exactly the questions whose answer changed.
var update = flag.Bool("update", false, "rewrite testdata/decisions.jsonl from the current policies")

// corpusFile holds generated questions and the decisions the policies gave them. It is JSON
// lines, not .json, so that neither keygate nor `opa test policies/` loads it as policy data.
var corpusFile = filepath.Join("testdata", "decisions.jsonl")

// question is one decision request as keygate's server has it after parsing the decision
// request: which API, the
// service and key it found (nil when unknown), the method as sent, the unescaped path and the
// query parameters in order. The harness (inputOf) builds the policy input from it the way
// the server does, so the corpus survives a change of the input's shape.
type question struct {
	API     string         `json:"api"`
	Service map[string]any `json:"service,omitempty"`
	Key     *corpusKey     `json:"key,omitempty"`
	Method  string         `json:"method"`
	Path    string         `json:"path"`
	Query   [][2]string    `json:"query"`
}

// corpusKey is a key in short: its service and the flags that are true (comma-separated), by
// endpoint. value expands it to the key input the server builds, with every flag present.
type corpusKey struct {
	Service    string            `json:"service"`
	Default    string            `json:"default"`
	Individual map[string]string `json:"individual,omitempty"`
	Management string            `json:"management"`
}

func (k *corpusKey) value() map[string]any {
	set := func(flags []string, on string) map[string]any {
		s := map[string]any{}
		for _, f := range flags {
			s[f] = slices.Contains(strings.Split(on, ","), f)
		}
		return s
	}
	individual := map[string]any{}
	for ep, on := range k.Individual {
		individual[ep] = set(contentFlags, on)
	}
	return map[string]any{
		"id": "key_" + k.Service, "service": k.Service, "name": "generated",
		"contentApi":    map[string]any{"default": set(contentFlags, k.Default), "individual": individual},
		"managementApi": set(managementFlags, k.Management),
	}
}

// corpusCase is one line of the corpus.
type corpusCase struct {
	Question question       `json:"q"`
	Want     map[string]any `json:"want"`
}

// TestDifferential evaluates every question of the committed corpus with the policies as they
// are now and requires the committed decision, field by field: a rewrite of the Rego that is
// meant to keep the answers must keep them on a few thousand questions covering every status
// and code of data.content.decision and data.management.decision.
func TestDifferential(t *testing.T) {
	eval := preparedDecisions(t)
	if *update {
		cases := generateCorpus(rand.New(rand.NewPCG(11, 2026)), 4000)
		var buf bytes.Buffer
		for i := range cases {
			cases[i].Want = eval(t, cases[i].Question)
			line, err := json.Marshal(cases[i])
			if err != nil {
				t.Fatal(err)
			}
			buf.Write(line)
			buf.WriteByte('\n')
		}
		if err := os.MkdirAll(filepath.Dir(corpusFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(corpusFile, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %d cases to %s", len(cases), corpusFile)
	}

	cases := readCorpus(t)
	if len(cases) < 1000 {
		t.Fatalf("corpus has %d cases, want a few thousand", len(cases))
	}
	// keygate's engine (its own virtual cache, early exit off) must answer as plain OPA does.
	set, err := engine.Load(t.Context(), dir, engine.DefaultEntrypoints())
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	failed := 0
	for i, c := range cases {
		got := eval(t, c.Question)
		in, _ := inputOf(c.Question)
		d, err := set.Decide(t.Context(), "data."+c.Question.API+".decision", in, 0)
		if err != nil {
			t.Fatal(err)
		}
		if plain, _ := ast.InterfaceToValue(withoutContentID(got)); d.Value.Compare(plain) != 0 {
			t.Errorf("case %d: the engine answers %v, plain OPA %v", i, d.Value, plain)
		}
		covered[fmt.Sprintf("%s %v %v", c.Question.API, c.Want["status"], c.Want["code"])] = true
		if diff := decisionDiff(c.Want, got); diff != "" {
			failed++
			if failed <= 20 {
				q, _ := json.Marshal(c.Question)
				t.Errorf("case %d (line %d): %s\n  question: %s", i, i+1, diff, q)
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d decisions differ from %s", failed, len(cases), corpusFile)
	}

	// The corpus must keep covering every answer of the two request entrypoints.
	for _, want := range []string{
		"content 200 allowed", "content 401 invalid_api_key", "content 404 not_found",
		"content 405 method_not_allowed", "content 400 method_forbidden", "content 400 plan_feature_unavailable",
		"management 200 allowed", "management 401 invalid_api_key", "management 403 forbidden",
	} {
		if !covered[want] {
			t.Errorf("the corpus has no case answered %q", want)
		}
	}
}

// withoutContentID is a decision as the policy gives it, before the server echoes contentId.
func withoutContentID(d map[string]any) map[string]any {
	out := maps.Clone(d)
	delete(out, "contentId")
	return out
}

// decisionDiff describes how got differs from want, "" when they are equal.
func decisionDiff(want, got map[string]any) string {
	w, _ := json.Marshal(want)
	g, _ := json.Marshal(got)
	if bytes.Equal(w, g) {
		return ""
	}
	return fmt.Sprintf("decision\n  got  %s\n  want %s", g, w)
}

func readCorpus(t *testing.T) []corpusCase {
	t.Helper()
	f, err := os.Open(corpusFile)
	if err != nil {
		t.Fatalf("%v (generate it: go test ./policies/ -run TestDifferential -update)", err)
	}
	defer f.Close()
	var cases []corpusCase
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var c corpusCase
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.UseNumber()
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("%s:%d: %v", corpusFile, len(cases)+1, err)
		}
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cases
}

// preparedDecisions prepares the two request entrypoints on the policies of this directory
// and returns a function that answers one question.
func preparedDecisions(t *testing.T) func(*testing.T, question) map[string]any {
	t.Helper()
	loaded, err := loader.NewFileLoader().WithProcessAnnotation(true).All([]string{dir})
	if err != nil {
		t.Fatalf("load policies: %v", err)
	}
	store, err := loaded.Store()
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	compiler := ast.NewCompiler().WithStrict(true)
	if compiler.Compile(loaded.ParsedModules()); compiler.Failed() {
		t.Fatalf("compile: %v", compiler.Errors)
	}
	queries := map[string]rego.PreparedEvalQuery{}
	for api, query := range map[string]string{"content": "data.content.decision", "management": "data.management.decision"} {
		pq, err := rego.New(rego.Query(query), rego.Compiler(compiler), rego.Store(store)).PrepareForEval(t.Context())
		if err != nil {
			t.Fatalf("prepare %s: %v", query, err)
		}
		queries[api] = pq
	}
	return func(t *testing.T, q question) map[string]any {
		t.Helper()
		input, rt := inputOf(q)
		rs, err := queries[q.API].Eval(t.Context(), rego.EvalParsedInput(input))
		if err != nil || len(rs) != 1 {
			t.Fatalf("eval %s: %v (%d results)", q.API, err, len(rs))
		}
		// Through JSON, so that numbers compare as the corpus stores them.
		b, err := json.Marshal(rs[0].Expressions[0].Value)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&out); err != nil {
			t.Fatal(err)
		}
		out["contentId"] = echoContentID(q.API, rt, out)
		return out
	}
}

// inputOf builds the policy input of a question as keygate's server does
// (internal/decision/input.go): the service and key when known, and the request with the first
// value of each query parameter, the names of all parameters, and the route the server
// parses from the path (absent when it has none) with the content id beside it. It also
// returns that route, whose content id the answer echoes.
func inputOf(q question) (ast.Value, route.Route) {
	query := map[string]any{}
	for _, kv := range q.Query {
		if _, seen := query[kv[0]]; !seen {
			query[kv[0]] = kv[1]
		}
	}
	params := []any{}
	for _, p := range route.Parameters(q.Query) {
		params = append(params, p)
	}
	req := map[string]any{"method": q.Method, "path": q.Path, "query": query, "parameters": params}
	parse := route.Content
	if q.API == "management" {
		parse = route.Management
	}
	rt, ok := parse(q.Path)
	if ok {
		r := map[string]any{"endpoint": rt.Endpoint}
		if rt.Kind != "" {
			r["kind"] = rt.Kind
		}
		if rt.Pattern != "" {
			r["pattern"] = rt.Pattern
		}
		req["route"] = r
	}
	req["contentId"] = rt.ContentID
	in := map[string]any{"request": req}
	if q.Service != nil {
		in["service"] = q.Service
	}
	if q.Key != nil {
		in["key"] = q.Key.value()
	}
	v, err := ast.InterfaceToValue(in)
	if err != nil {
		panic(err)
	}
	return v, rt
}

// echoContentID is the content id the server's answer carries (internal/server, decide.go):
// its own parse of the path; on the management API only for a route the policy knows.
func echoContentID(api string, rt route.Route, decision map[string]any) string {
	if api == "management" && decision["permission"] == "" {
		return ""
	}
	return rt.ContentID
}

// The generator's vocabulary: real and odd spellings of every part of a question.
var (
	contentFlags    = []string{"get", "getAllDrafts", "getAllClosed", "post", "put", "patch", "delete"}
	managementFlags = []string{"getContents", "patchContentCreatedBy", "patchContentStatus", "getMedia",
		"postMedia", "deleteMedia", "getMembers", "getApis", "getService"}
	services = []map[string]any{
		{"id": "team-demo", "plan": "team"},
		{"id": "hobby-demo", "plan": "hobby"},
		{"id": "business-demo", "plan": "business"},
		{"id": "enterprise-demo", "plan": "enterprise"},
		{"id": "gold-demo", "plan": "gold"}, // a plan policies/plans/data.json does not know
	}
	methods   = []string{"GET", "GET", "GET", "HEAD", "POST", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get", "TRACE"}
	endpoints = []string{"blogs", "news", "contact", "Contact", "BLOGS", "api-1", "a_b"}
	ids       = []string{"abc", "Ab-9_x", "c0ffee12"}
	oddPaths  = []string{
		"/", "/api/v1", "/api/v1/", "/api/v2/blogs", "/api/v1/./contact", "/api/v1/../contact",
		"/api/v1/blogs/..", "/api/v1//contact", "/api/v1/blogs/", "/api/v1/a.b", "/api/v1/blogs/x.html",
		`/api/v1/blogs\..\contact`, "/api/v1/blogs/%2e", "/api/v1/blogs/abc/extra", "/api/v1/ブログ",
		"/api/v1/blogs/{id}", "/api/v1/blogs;x", "/api/v1/blogs/a b", "api/v1/blogs", "/API/V1/blogs",
	}
	managementPaths = []string{
		"/api/v1/contents/%s", "/api/v1/contents/%s/%s", "/api/v1/contents/%s/%s/createdBy",
		"/api/v1/contents/%s/%s/status", "/api/v1/media", "/api/v2/media", "/api/v1/members",
		"/api/v1/members/%[2]s", "/api/v1/apis", "/api/v1/apis/%s", "/api/v1/service",
	}
	oddManagementPaths = []string{
		"/api/v1/contents", "/api/v1/contents/../media", "/api/v1/contents/blogs/../../media",
		"/api/v1/contents/./blogs", "/api/v1/contents/blogs/abc/other", "/api/v3/media", "/api/v1/media/x",
		"/api/v1/service/", "/api/v1/members/a.b", "/api/v1/contents/blogs/abc/status/x", "/",
		"/api/v1/contents/a%2eb", "/api/v2/members", "/api/v1/apis/blogs/x",
	}
	queries = [][][2]string{
		{}, {}, {}, {{"limit", "10"}, {"offset", "20"}},
		{{"draftKey", "dk1"}}, {{"draftKey", ""}}, {{"draftKey", "a"}, {"draftKey", "b"}},
		{{"status", "draft"}}, {{"status", "closed"}, {"draftKey", "dk"}}, {{"status", ""}},
		{{"Status", "draft"}}, {{"status[]", "draft"}}, {{" status", "draft"}}, {{"x", "1;status=draft"}},
		{{"STATUS", "closed"}}, {{"status[0]", "draft"}},
	}
)

// generateCorpus makes n questions at random from the vocabulary (deterministic for a seed).
func generateCorpus(rng *rand.Rand, n int) []corpusCase {
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	cases := make([]corpusCase, 0, n)
	for range n {
		q := question{API: "content", Method: pick(methods), Query: slices.Clone(queries[rng.IntN(len(queries))])}
		if rng.IntN(4) == 0 {
			q.API = "management"
		}
		svc := services[rng.IntN(len(services))]
		if rng.IntN(12) > 0 {
			q.Service = svc
		}
		switch r := rng.IntN(12); {
		case r == 0: // no key, or an unknown one
		case r == 1: // a key of another service
			q.Key = genKey(rng, services[rng.IntN(len(services))]["id"].(string))
		default:
			q.Key = genKey(rng, svc["id"].(string))
		}
		ep, id := pick(endpoints), pick(ids)
		switch api, r := q.API, rng.IntN(10); {
		case api == "content" && r < 4:
			q.Path = "/api/v1/" + ep
		case api == "content" && r < 8:
			q.Path = "/api/v1/" + ep + "/" + id
		case api == "content":
			q.Path = pick(oddPaths)
		case r < 8:
			q.Path = fmt.Sprintf(pick(managementPaths), ep, id)
			// Most management requests use the method the route needs.
			if rng.IntN(3) > 0 {
				q.Method = managementMethod(rng, q.Path)
			}
		default:
			q.Path = pick(oddManagementPaths)
		}
		cases = append(cases, corpusCase{Question: q})
	}
	return cases
}

// managementMethod is a method some management route takes for this path.
func managementMethod(rng *rand.Rand, path string) string {
	switch {
	case strings.HasSuffix(path, "/status"), strings.HasSuffix(path, "/createdBy"):
		return "PATCH"
	case path == "/api/v1/media":
		return []string{"GET", "POST"}[rng.IntN(2)]
	case path == "/api/v2/media":
		return []string{"GET", "DELETE"}[rng.IntN(2)]
	default:
		return "GET"
	}
}

// genKey is a key of service with flags at random and individual entries on some endpoints
// (the real and an upper-case spelling).
func genKey(rng *rand.Rand, service string) *corpusKey {
	set := func(flags []string, p int) string {
		var on []string
		for _, f := range flags {
			if rng.IntN(100) < p {
				on = append(on, f)
			}
		}
		return strings.Join(on, ",")
	}
	k := &corpusKey{Service: service, Default: set(contentFlags, 45), Management: set(managementFlags, 40)}
	for _, ep := range []string{"blogs", "contact", "news", "Contact"} {
		if rng.IntN(3) == 0 {
			if k.Individual == nil {
				k.Individual = map[string]string{}
			}
			k.Individual[ep] = set(contentFlags, 50)
		}
	}
	return k
}
