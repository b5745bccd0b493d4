package engine

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// TestFlatCacheMatchesOPA runs random Push/Pop/Put/Get/Keys sequences on the flat virtual
// cache and on OPA's own and requires the same answers, across pooled reuse.
func TestFlatCacheMatchesOPA(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	refs := []ast.Ref{
		ast.MustParseRef("data.a"), ast.MustParseRef("data.a.b"), ast.MustParseRef("data.a.c"),
		ast.MustParseRef(`data.f["x"]`), ast.MustParseRef(`data.f[1]`), ast.MustParseRef("data.g"),
	}
	values := []*ast.Term{nil, ast.StringTerm("v"), ast.IntNumberTerm(1), ast.BooleanTerm(false)}
	for round := range 50 {
		flat, opa := getFlatCache(), topdown.NewVirtualCache()
		depth := 1
		for step := range 200 {
			switch op := rng.IntN(10); {
			case op == 0 && depth < 5:
				flat.Push()
				opa.Push()
				depth++
			case op == 1 && depth > 1:
				flat.Pop()
				opa.Pop()
				depth--
			case op < 5:
				ref, v := refs[rng.IntN(len(refs))], values[rng.IntN(len(values))]
				// Put a copy and scribble over it afterwards: the cache must keep its own.
				cp := slices.Clone(ref)
				flat.Put(cp, v)
				opa.Put(ref, v)
				cp[0] = ast.VarTerm("scribbled")
			case op < 9:
				ref := refs[rng.IntN(len(refs))]
				fv, fu := flat.Get(ref)
				ov, ou := opa.Get(ref)
				if fu != ou || (fv == nil) != (ov == nil) || fv != nil && !fv.Equal(ov) {
					t.Fatalf("round %d step %d: Get(%v) = %v, %v; OPA's cache says %v, %v", round, step, ref, fv, fu, ov, ou)
				}
			default:
				fk, ok := flat.Keys(), opa.Keys()
				if !sameRefs(fk, ok) {
					t.Fatalf("round %d step %d: Keys() = %v; OPA's cache says %v", round, step, fk, ok)
				}
			}
		}
		putFlatCache(flat)
	}
}

func sameRefs(a, b []ast.Ref) bool {
	key := func(rs []ast.Ref) []string {
		out := make([]string, len(rs))
		for i, r := range rs {
			out[i] = r.String()
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}
