package authz

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/open-policy-agent/opa/v1/ast"
)

var _ keystore.SeedAuthorizer = Policy{}

// seedMemoMax bounds the distinct configurations a seeding remembers;
// past it, a configuration not yet seen is evaluated without being kept.
const seedMemoMax = 1 << 16

// SeedChecker implements keystore.SeedAuthorizer: a checker of seed keys
// bound to the policy revision serving now, for the whole seeding.
//
// It asks the keys policy's violations rule (engine.KeysViolations)
// directly, and remembers each verdict by what that rule reads of the
// input: its projection (engine.Project), the same analysis the decision
// cache keys on. With the shipped policy that is the action and the
// content API permissions, so a million seed keys in a handful of shapes
// cost a handful of evaluations. A policy whose rule reads more (the
// service id, the key's name) is keyed on that too; one read whole or
// non-deterministically is evaluated once per key; and a policy set
// without the rule is asked data.keys.decision once per key, as
// AuthorizeKeys would be. Every path checks every key.
func (a Policy) SeedChecker(ctx context.Context) (keystore.SeedChecker, error) {
	set := a.eng.Current()
	c := &SeedCheck{set: set, timeout: a.eng.Timeout(), memo: map[string]*seedVerdict{}}
	if !set.Has(engine.KeysViolations) {
		c.mode = seedByDecision
		return c, nil
	}
	c.mode = seedByRule
	p := set.Projection(engine.KeysViolations)
	if p == nil || !p.Cacheable || p.Whole {
		return c, nil
	}
	c.paths = p.Steps()
	c.memoise = true
	return c, nil
}

type seedMode uint8

const (
	seedByDecision seedMode = iota // data.keys.decision per key
	seedByRule                     // data.keys.violations
)

// SeedCheck is one seeding's checker (see Policy.SeedChecker).
type SeedCheck struct {
	set     *engine.PolicySet
	timeout time.Duration
	mode    seedMode
	memoise bool
	paths   [][]*ast.Term

	mu   sync.Mutex
	memo map[string]*seedVerdict

	evaluations atomic.Int64
}

// seedVerdict is one remembered evaluation; once makes concurrent askers
// of the same configuration wait for the one evaluation.
type seedVerdict struct {
	once       sync.Once
	violations []keystore.Violation
	err        error
}

// Evaluations is how many policy evaluations the checker made so far.
func (c *SeedCheck) Evaluations() int64 { return c.evaluations.Load() }

// SeedViolations implements keystore.SeedChecker.
func (c *SeedCheck) SeedViolations(ctx context.Context, req keystore.KeyRequest) ([]keystore.Violation, error) {
	if !c.memoise {
		return c.evaluate(ctx, req)
	}
	var scratch [256]byte
	key, ok := projectRequest(scratch[:0], &req, c.paths)
	if !ok {
		return c.evaluate(ctx, req)
	}
	c.mu.Lock()
	v, seen := c.memo[string(key)]
	if !seen && len(c.memo) < seedMemoMax {
		v = &seedVerdict{}
		c.memo[string(key)] = v
	}
	c.mu.Unlock()
	if v == nil {
		return c.evaluate(ctx, req)
	}
	v.once.Do(func() { v.violations, v.err = c.evaluate(ctx, req) })
	return v.violations, v.err
}

// evaluate asks the policy about one request.
func (c *SeedCheck) evaluate(ctx context.Context, req keystore.KeyRequest) ([]keystore.Violation, error) {
	c.evaluations.Add(1)
	in, err := ast.InterfaceToValue(req)
	if err != nil {
		return nil, fmt.Errorf("keys input: %w", err)
	}
	if c.mode == seedByDecision {
		d, err := c.set.Decide(ctx, engine.Keys, in, c.timeout)
		if err != nil {
			return nil, err
		}
		out, err := keyDecision(d)
		return out.Violations, err
	}
	v, err := c.set.Evaluate(ctx, engine.KeysViolations, in, c.timeout)
	if err != nil {
		return nil, err
	}
	if _, ok := v.(*ast.Array); !ok {
		return nil, fmt.Errorf("%s is %s, not an array", engine.KeysViolations, ast.ValueName(v))
	}
	var out []keystore.Violation
	if err := ast.As(v, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", engine.KeysViolations, err)
	}
	return out, nil
}

// projectRequest appends to buf an encoding of the values of req's policy
// input (KeyRequest as JSON) at each path, such that two requests get the
// same encoding only if their input is equal at every path. It models the
// input's JSON shape down to the key's name, content and management
// permissions and the service's fields; a path that goes deeper is keyed
// on the whole value it reaches (it reads no more than that). false when a
// path step is not a string (it cannot name a field of the input).
func projectRequest(buf []byte, req *keystore.KeyRequest, paths [][]*ast.Term) ([]byte, bool) {
	for i, path := range paths {
		buf = binary.AppendUvarint(buf, uint64(i))
		var steps [2]string
		n := min(len(path), len(steps))
		for j, t := range path[:n] {
			s, ok := t.Value.(ast.String)
			if !ok {
				return nil, false
			}
			steps[j] = string(s)
		}
		buf = projectStep(buf, req, steps[:n])
	}
	return buf, true
}

// Markers of the encoding: a value that is absent (undefined in the
// input), or present.
const (
	absent  = 0
	present = 1
)

func projectStep(buf []byte, req *keystore.KeyRequest, steps []string) []byte {
	sub := ""
	if len(steps) > 1 {
		sub = steps[1]
	}
	switch steps[0] {
	case "action":
		return appendString(append(buf, present), req.Action)
	case "service":
		return appendService(buf, &req.Service, sub)
	case "member":
		if req.Member == nil {
			return append(buf, absent)
		}
		m := req.Member
		return appendString(appendString(appendString(append(buf, present), m.ID), m.Service), m.Role)
	case "key":
		if req.Key == nil {
			return append(buf, absent)
		}
		return appendSpec(append(buf, present), req.Key, sub)
	default:
		return append(buf, absent) // no such member of the input
	}
}

// appendService encodes the service object, or its member sub ("" for
// the whole object).
func appendService(buf []byte, s *keystore.ServiceInput, sub string) []byte {
	whole := sub == ""
	if whole || sub == "id" {
		buf = appendString(buf, s.ID)
	}
	if whole || sub == "plan" {
		buf = appendString(buf, s.Plan) // omitted when empty: "" stands for absent
	}
	if whole || sub == "keyCount" {
		buf = binary.AppendVarint(buf, int64(s.KeyCount))
	}
	if whole || sub == "apis" {
		if s.APIs == nil {
			buf = append(buf, absent)
		} else {
			buf = binary.AppendUvarint(append(buf, present), uint64(len(s.APIs)))
			for _, a := range s.APIs {
				buf = appendString(buf, a)
			}
		}
	}
	if !whole && sub != "id" && sub != "plan" && sub != "keyCount" && sub != "apis" {
		buf = append(buf, absent)
	}
	return buf
}

// appendSpec encodes the key configuration, or its member sub.
func appendSpec(buf []byte, k *keystore.KeySpec, sub string) []byte {
	whole := sub == ""
	if whole || sub == "name" {
		buf = appendString(buf, k.Name)
	}
	if whole || sub == "contentApi" {
		buf = appendContentAPI(buf, &k.ContentAPI)
	}
	if whole || sub == "managementApi" {
		buf = binary.BigEndian.AppendUint16(buf, managementBits(k.ManagementAPI))
	}
	if !whole && sub != "name" && sub != "contentApi" && sub != "managementApi" {
		buf = append(buf, absent)
	}
	return buf
}

// appendContentAPI encodes the default set and the individual entries in
// endpoint order (a nil and an empty map are both {} in the input).
func appendContentAPI(buf []byte, c *keystore.ContentAPI) []byte {
	buf = append(buf, contentBits(c.Default))
	buf = binary.AppendUvarint(buf, uint64(len(c.Individual)))
	if len(c.Individual) == 0 {
		return buf
	}
	var scratch [32]string
	eps := scratch[:0]
	for ep := range c.Individual {
		eps = append(eps, ep)
	}
	slices.Sort(eps)
	for _, ep := range eps {
		buf = append(appendString(buf, ep), contentBits(c.Individual[ep]))
	}
	return buf
}

func appendString(buf []byte, s string) []byte {
	return append(binary.AppendUvarint(buf, uint64(len(s))), s...)
}

func bit(b bool, n uint) uint16 {
	if b {
		return 1 << n
	}
	return 0
}

// contentBits is the 7 flags of a content permission set.
func contentBits(p keystore.ContentPerms) byte {
	return byte(bit(p.Get, 0) | bit(p.GetAllDrafts, 1) | bit(p.GetAllClosed, 2) | bit(p.Post, 3) |
		bit(p.Put, 4) | bit(p.Patch, 5) | bit(p.Delete, 6))
}

// managementBits is the 9 flags of a management permission set.
func managementBits(p keystore.ManagementPerms) uint16 {
	return bit(p.GetContents, 0) | bit(p.PatchContentCreatedBy, 1) | bit(p.PatchContentStatus, 2) |
		bit(p.GetMedia, 3) | bit(p.PostMedia, 4) | bit(p.DeleteMedia, 5) | bit(p.GetMembers, 6) |
		bit(p.GetApis, 7) | bit(p.GetService, 8)
}
