package engine

import (
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Projection is what one entrypoint reads of its input, derived from the
// compiled policy when a policy set loads. A decision cache may key a
// decision on the values at Paths (with the policy revision and whatever
// else the policy reads, such as data, being fixed by that revision): two
// inputs equal on every path get the same decision. When the analysis
// cannot be sure, Whole says so and the key must be the whole input; when
// the entrypoint reaches a non-deterministic builtin, Cacheable is false.
type Projection struct {
	// Entrypoint is the rule the projection is for, e.g. data.content.decision.
	Entrypoint string `json:"entrypoint"`
	// Cacheable is false when a decision must not be cached at all.
	Cacheable bool `json:"cacheable"`
	// Whole is true when the decision may depend on any part of the input.
	Whole bool `json:"whole"`
	// Paths are the input paths read, as refs ("input.request.method"), cut
	// at the first step that is not a constant, sorted, and without a path
	// that another one is a prefix of. Empty when Whole or not Cacheable.
	Paths []string `json:"paths,omitempty"`
	// Reason says why Whole or not Cacheable ("" otherwise).
	Reason string `json:"reason,omitempty"`

	// steps are Paths as terms, after "input".
	steps [][]*ast.Term
}

// Steps returns the projection's paths as their steps after "input" (each
// a constant term, usually a string). Nil when Whole or not Cacheable.
func (p *Projection) Steps() [][]*ast.Term { return p.steps }

// Project derives the projection of entrypoint from a compiled policy: the
// input refs of every rule and function reachable from it. The fallbacks,
// which each make the projection Whole: input used as a value (passed
// whole to a function or builtin, as walk(input), json.marshal(input) or
// object.get(input, …)), a ref whose first step after input is not a
// constant (input[x]), and `with input… as`. A reachable builtin that OPA
// marks non-deterministic (time.now_ns, rand.intn, http.send, …) makes the
// entrypoint not Cacheable.
func Project(c *ast.Compiler, entrypoint string) (*Projection, error) {
	ref, err := ast.ParseRef(entrypoint)
	if err != nil {
		return nil, err
	}
	p := &Projection{Entrypoint: entrypoint, Cacheable: true}
	a := &analysis{compiler: c, seen: map[*ast.Rule]bool{}}
	for _, r := range c.GetRules(ref) {
		a.add(r)
	}
	for len(a.todo) > 0 {
		r := a.todo[len(a.todo)-1]
		a.todo = a.todo[:len(a.todo)-1]
		a.rule(r)
	}
	switch {
	case a.nondeterministic != "":
		p.Cacheable, p.Reason = false, "reaches the non-deterministic builtin "+a.nondeterministic
	case a.whole != "":
		p.Whole, p.Reason = true, a.whole
	default:
		p.steps = minimalPaths(a.paths)
		for _, s := range p.steps {
			p.Paths = append(p.Paths, ast.Ref(append([]*ast.Term{ast.InputRootDocument}, s...)).String())
		}
	}
	return p, nil
}

type analysis struct {
	compiler         *ast.Compiler
	seen             map[*ast.Rule]bool
	todo             []*ast.Rule
	paths            [][]*ast.Term
	whole            string // the first reason the input is read whole
	nondeterministic string // the first non-deterministic builtin reached
}

// add queues r and its else chain.
func (a *analysis) add(r *ast.Rule) {
	for ; r != nil; r = r.Else {
		if !a.seen[r] {
			a.seen[r] = true
			a.todo = append(a.todo, r)
		}
	}
}

func (a *analysis) wholeBecause(format string, args ...any) {
	if a.whole == "" {
		a.whole = fmt.Sprintf(format, args...)
	}
}

// rule records what r reads and queues the rules it depends on.
func (a *analysis) rule(r *ast.Rule) {
	if a.compiler.Graph != nil {
		for dep := range a.compiler.Graph.Dependencies(r) {
			if d, ok := dep.(*ast.Rule); ok {
				a.add(d)
			}
		}
	}
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.Rule:
			// Walk the head and body of this rule only; the else chain
			// is queued as rules of their own.
			vis.Walk(x.Head)
			vis.Walk(x.Body)
			return true
		case *ast.Expr:
			for _, w := range x.With {
				if refOf(w.Target).HasPrefix(ast.InputRootRef) {
					a.wholeBecause("`with %v as` replaces the input (%v)", w.Target, location(w.Location))
				}
			}
			if x.IsCall() {
				a.call(x.Operator())
			}
		case ast.Call:
			if len(x) > 0 {
				if op, ok := x[0].Value.(ast.Ref); ok {
					a.call(op)
				}
			}
		case ast.Ref:
			a.ref(vis, x)
			return true
		case ast.Var:
			if x.Equal(ast.InputRootDocument.Value) {
				a.wholeBecause("the input is used as a value (%v)", location(r.Location))
			}
		}
		return false
	})
	vis.Walk(r)
}

// ref records a ref rooted at input (cut at its first non-constant step),
// queues the rules a ref into data may select, and walks the ref's
// operands.
func (a *analysis) ref(vis *ast.GenericVisitor, ref ast.Ref) {
	head := ref[0]
	switch {
	case head.Value.Compare(ast.InputRootDocument.Value) == 0:
		var steps []*ast.Term
		for _, t := range ref[1:] {
			if !t.IsGround() {
				break
			}
			steps = append(steps, t)
		}
		if len(steps) == 0 {
			if len(ref) == 1 {
				a.wholeBecause("the input is used as a value (%v)", location(head.Location))
			} else {
				a.wholeBecause("%v has a dynamic first step (%v)", ref, location(head.Location))
			}
		} else {
			a.paths = append(a.paths, steps)
		}
	case head.Value.Compare(ast.DefaultRootDocument.Value) == 0:
		prefix := ref.ConstantPrefix()
		for _, r := range a.compiler.GetRules(prefix) {
			a.add(r)
		}
		// Rules below a dynamic prefix (data.pkg[x]) may be selected too.
		if len(prefix) < len(ref) {
			for _, r := range a.compiler.GetRulesWithPrefix(prefix) {
				a.add(r)
			}
		}
	default:
		vis.Walk(head)
	}
	for _, t := range ref[1:] {
		vis.Walk(t)
	}
}

// call notes a call of a non-deterministic builtin.
func (a *analysis) call(op ast.Ref) {
	name := op.String()
	if b, ok := ast.BuiltinMap[name]; ok && b.Nondeterministic && a.nondeterministic == "" {
		a.nondeterministic = name
	}
}

func refOf(t *ast.Term) ast.Ref {
	if r, ok := t.Value.(ast.Ref); ok {
		return r
	}
	return nil
}

func location(l *ast.Location) string {
	if l == nil {
		return "unknown location"
	}
	return fmt.Sprintf("%s:%d", l.File, l.Row)
}

// minimalPaths sorts paths and drops every path that another one is a
// prefix of (reading input.key makes input.key.service redundant).
func minimalPaths(paths [][]*ast.Term) [][]*ast.Term {
	cmp := func(a, b []*ast.Term) int {
		for i := range min(len(a), len(b)) {
			if c := a[i].Value.Compare(b[i].Value); c != 0 {
				return c
			}
		}
		return len(a) - len(b)
	}
	slices.SortFunc(paths, cmp)
	var out [][]*ast.Term
	for _, p := range paths {
		if n := len(out); n > 0 && isPrefix(out[n-1], p) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func isPrefix(prefix, p []*ast.Term) bool {
	if len(prefix) > len(p) {
		return false
	}
	for i := range prefix {
		if !prefix[i].Equal(p[i]) {
			return false
		}
	}
	return true
}

// String is the projection as /v1/policies shows it, in one line.
func (p *Projection) String() string {
	switch {
	case !p.Cacheable:
		return p.Entrypoint + ": not cached: " + p.Reason
	case p.Whole:
		return p.Entrypoint + ": keyed on the whole input: " + p.Reason
	}
	return p.Entrypoint + ": keyed on " + strings.Join(p.Paths, ", ")
}
