package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// PolicySet is one compiled, immutable revision of the policy directory.
// Prepared queries are safe for concurrent use, so a PolicySet may be shared
// by any number of concurrent decisions.
type PolicySet struct {
	// Revision is a content hash of every loaded file (path and bytes).
	Revision string
	// Files are the loaded files, relative to the directory, sorted.
	Files []string
	// LoadedAt is when the set was compiled.
	LoadedAt time.Time
	// Compiler is the strict-mode compiler holding the modules.
	Compiler *ast.Compiler

	queries map[string]rego.PreparedEvalQuery
	// projections say, per entrypoint, what of the input a decision
	// depends on (see Project).
	projections map[string]*Projection
	// metrics is a no-op sink: keygate does not read OPA's per-evaluation
	// timers, so it spares their allocation.
	metrics metrics.Metrics
}

// LoadError is one load or compile error with its location.
type LoadError struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

// IsPolicyFile reports whether name is a file the engine loads: Rego modules
// and JSON/YAML policy data, but not editor swap, backup or temp files.
func IsPolicyFile(name string) bool {
	base := filepath.Base(name)
	if IsEditorTemp(base) {
		return false
	}
	switch strings.ToLower(filepath.Ext(base)) {
	case ".rego", ".json", ".yaml", ".yml":
		return true
	}
	return false
}

// IsEditorTemp reports whether a base name belongs to an editor's temporary,
// swap or backup file (vim's 4913 probe, *.swp, *~, *.tmp, dot files).
func IsEditorTemp(base string) bool {
	return strings.HasPrefix(base, ".") || strings.HasSuffix(base, "~") ||
		strings.HasSuffix(base, ".swp") || strings.HasSuffix(base, ".swx") ||
		strings.HasSuffix(base, ".tmp") || base == "4913"
}

// Load reads every policy file under dir (following a symlinked root such as
// a Kubernetes ConfigMap mount), compiles the modules in strict mode, builds
// the data store and prepares one query per entrypoint. The result is
// complete or an error: nothing is half-loaded.
func Load(ctx context.Context, dir string, entrypoints []string) (*PolicySet, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("load policies %s: %w", dir, err)
	}
	// The loader skips directories whose names start with "..", so a
	// ConfigMap's ..data is reached through the resolved root, and its
	// ..2025_… twin is never loaded twice.
	filter := func(abspath string, info fs.FileInfo, depth int) bool {
		if info.IsDir() {
			return depth > 0 && strings.HasPrefix(info.Name(), ".")
		}
		return !IsPolicyFile(info.Name())
	}
	res, err := loader.NewFileLoader().
		WithProcessAnnotation(true).
		WithRegoVersion(ast.RegoV1).
		WithFollowSymlinks(true).
		Filtered([]string{root}, filter)
	if err != nil {
		return nil, fmt.Errorf("load policies %s: %w", dir, err)
	}
	if len(res.Modules) == 0 {
		return nil, fmt.Errorf("load policies %s: no .rego files", dir)
	}

	files, revision, err := revisionOf(root, res)
	if err != nil {
		return nil, fmt.Errorf("load policies %s: %w", dir, err)
	}

	modules := make(map[string]*ast.Module, len(res.Modules))
	for _, m := range res.Modules {
		modules[relName(root, m.Name)] = m.Parsed
	}
	return compileSet(ctx, dir, modules, res.Documents, revision, files, entrypoints)
}

// compileSet compiles parsed modules in strict mode, builds the data store
// from docs and prepares one query per entrypoint: the part of loading that
// every policy source (directory or bundle) shares. label names the source
// in errors.
func compileSet(ctx context.Context, label string, modules map[string]*ast.Module, docs map[string]any,
	revision string, files []string, entrypoints []string,
) (*PolicySet, error) {
	compiler := ast.NewCompiler().
		WithStrict(true).
		WithEnablePrintStatements(false).
		WithDefaultRegoVersion(ast.RegoV1)
	if compiler.Compile(modules); compiler.Failed() {
		return nil, fmt.Errorf("compile policies %s: %w", label, compiler.Errors)
	}

	store := inmem.NewFromObjectWithOpts(docs, inmem.OptReturnASTValuesOnRead(true))
	set := &PolicySet{
		Revision: revision,
		Files:    files,
		LoadedAt: time.Now(),
		Compiler: compiler,
		queries:  make(map[string]rego.PreparedEvalQuery, len(entrypoints)),
		metrics:  metrics.NoOp(),

		projections: make(map[string]*Projection, len(entrypoints)),
	}
	for _, ep := range append(slices.Clone(entrypoints), OptionalEntrypoints()...) {
		if err := requireRule(compiler, ep); err != nil {
			if isOptional(ep) && !slices.Contains(entrypoints, ep) {
				continue // not defined: asked through the decision instead
			}
			return nil, fmt.Errorf("prepare %s: %w", ep, err)
		}
		if _, done := set.queries[ep]; done {
			continue
		}
		pq, err := rego.New(
			rego.Query(ep),
			rego.Compiler(compiler),
			rego.Store(store),
			rego.GenerateJSON(keepAST),
		).PrepareForEval(ctx)
		if err != nil {
			return nil, fmt.Errorf("prepare %s: %w", ep, err)
		}
		set.queries[ep] = pq
		proj, err := Project(compiler, ep)
		if err != nil {
			return nil, fmt.Errorf("analyse %s: %w", ep, err)
		}
		set.projections[ep] = proj
	}
	return set, nil
}

// Projection returns what entrypoint's decisions depend on in the input,
// nil for an entrypoint that was not prepared.
func (p *PolicySet) Projection(entrypoint string) *Projection { return p.projections[entrypoint] }

// Projections lists the projection of every prepared decision
// entrypoint (not the optional rules), sorted.
func (p *PolicySet) Projections() []*Projection {
	out := make([]*Projection, 0, len(p.projections))
	for ep, pr := range p.projections {
		if !isOptional(ep) {
			out = append(out, pr)
		}
	}
	slices.SortFunc(out, func(a, b *Projection) int { return strings.Compare(a.Entrypoint, b.Entrypoint) })
	return out
}

// isOptional reports whether ep is one of OptionalEntrypoints.
func isOptional(ep string) bool { return slices.Contains(OptionalEntrypoints(), ep) }

// keepAST hands result values back as ast.Values, sparing a conversion to
// Go maps and back on every decision.
func keepAST(t *ast.Term, _ *rego.EvalContext) (any, error) { return t.Value, nil }

// requireRule fails when no rule defines the entrypoint: a policy edit that
// deletes a decision rule must be rejected rather than deny everything.
func requireRule(c *ast.Compiler, entrypoint string) error {
	ref, err := ast.ParseRef(entrypoint)
	if err != nil {
		return err
	}
	if len(c.GetRulesExact(ref)) == 0 {
		return fmt.Errorf("no rule defines %s", entrypoint)
	}
	return nil
}

// revisionOf hashes exactly what was loaded — each module's relative path
// and bytes, and the data documents in canonical JSON (sorted keys) — so
// the revision changes exactly when the policy set does, however the files
// were reached (symlinked directories included) and whatever happened on
// disk after the loader read them. The file list, for display, adds the
// data files found under root.
func revisionOf(root string, res *loader.Result) ([]string, string, error) {
	mods := make([]*loader.RegoFile, 0, len(res.Modules))
	for _, m := range res.Modules {
		mods = append(mods, m)
	}
	slices.SortFunc(mods, func(a, b *loader.RegoFile) int { return strings.Compare(a.Name, b.Name) })
	h := sha256.New()
	files := make([]string, 0, len(mods))
	for _, m := range mods {
		rel := relName(root, m.Name)
		files = append(files, rel)
		fmt.Fprintf(h, "%s\x00%d\x00", rel, len(m.Raw))
		h.Write(m.Raw)
	}
	docs, err := json.Marshal(res.Documents)
	if err != nil {
		return nil, "", fmt.Errorf("hash policy data: %w", err)
	}
	fmt.Fprintf(h, "data\x00%d\x00", len(docs))
	h.Write(docs)

	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // the display list is best effort; the load itself succeeded
		}
		if d.IsDir() {
			if p != root && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.ToLower(filepath.Ext(p)) != ".rego" && IsPolicyFile(p) {
			files = append(files, relName(root, p))
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	slices.Sort(files)
	return slices.Compact(files), hex.EncodeToString(h.Sum(nil))[:16], nil
}

func relName(root, p string) string {
	if rel, err := filepath.Rel(root, p); err == nil {
		return filepath.ToSlash(rel)
	}
	return p
}

// loadErrors extracts file/line/message triples from a load or compile error.
func loadErrors(err error) []LoadError {
	var out []LoadError
	var astErrs ast.Errors
	if errors.As(err, &astErrs) {
		for _, e := range astErrs {
			le := LoadError{Message: e.Message}
			if e.Location != nil {
				le.File, le.Line = e.Location.File, e.Location.Row
			}
			out = append(out, le)
		}
		return out
	}
	var lerrs loader.Errors
	if errors.As(err, &lerrs) {
		for _, e := range lerrs {
			le := LoadError{Message: e.Error()}
			var ae *ast.Error
			var syn *json.SyntaxError
			switch {
			case errors.As(e, &ae):
				le.Message = ae.Message
				if ae.Location != nil {
					le.File, le.Line = ae.Location.File, ae.Location.Row
				}
			case errors.As(e, &syn):
				le = jsonLoadError(e, syn)
			}
			out = append(out, le)
		}
		return out
	}
	return []LoadError{{Message: err.Error()}}
}

// jsonLoadError locates a syntax error in a JSON data file. The loader
// reports it as "<path>: <error>"; the line is counted from the offset in the
// file as it is now, which is the file that failed unless it changed again
// since (the watcher then reloads once more anyway).
func jsonLoadError(e error, syn *json.SyntaxError) LoadError {
	le := LoadError{Message: syn.Error()}
	path, ok := strings.CutSuffix(e.Error(), ": "+syn.Error())
	if !ok {
		return LoadError{Message: e.Error()}
	}
	le.File = path
	if b, err := os.ReadFile(path); err == nil && syn.Offset <= int64(len(b)) {
		le.Line = bytes.Count(b[:syn.Offset], []byte("\n")) + 1
	}
	return le
}
