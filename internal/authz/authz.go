// Package authz answers the key store's questions with the policy engine:
// key management with data.keys.decision, IP restriction settings with
// data.network.decision. It is the one bridge from engine to keystore;
// neither imports the other.
package authz

import (
	"context"
	"fmt"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/open-policy-agent/opa/v1/ast"
)

// Policy answers the key store's key-management questions with the keys
// policy (data.keys.decision) and its IP restriction questions with the
// network policy (data.network.decision).
type Policy struct{ eng *engine.Engine }

// New returns the authorizer of eng's policies.
func New(eng *engine.Engine) Policy { return Policy{eng: eng} }

var _ keystore.Authorizer = Policy{}

// AuthorizeKeys implements keystore.Authorizer. Key writes are rare, so the
// input and decision go through JSON-shaped conversion for clarity.
func (a Policy) AuthorizeKeys(ctx context.Context, req keystore.KeyRequest) (keystore.KeyDecision, error) {
	in, err := ast.InterfaceToValue(req)
	if err != nil {
		return keystore.KeyDecision{}, fmt.Errorf("keys input: %w", err)
	}
	d, err := a.eng.Decide(ctx, engine.Keys, in)
	if err != nil {
		return keystore.KeyDecision{PolicyRevision: d.Revision}, err
	}
	return keyDecision(d)
}

// keyDecision reads a keys decision object, refusing one of the wrong
// shape.
func keyDecision(d engine.Decision) (keystore.KeyDecision, error) {
	// JSON decoding would read a null "allow" as false and a null status as
	// 0; a decision of the wrong shape is a broken policy, not a deny.
	if t := d.Value.Get(ast.InternedTerm("allow")); t != nil {
		if _, ok := t.Value.(ast.Boolean); !ok {
			return keystore.KeyDecision{}, fmt.Errorf("keys decision: allow is %s, not a boolean", ast.ValueName(t.Value))
		}
	}
	if t := d.Value.Get(ast.InternedTerm("status")); t != nil {
		if _, ok := t.Value.(ast.Number); !ok {
			return keystore.KeyDecision{}, fmt.Errorf("keys decision: status is %s, not a number", ast.ValueName(t.Value))
		}
	}
	var out keystore.KeyDecision
	if err := ast.As(d.Value, &out); err != nil {
		return keystore.KeyDecision{PolicyRevision: d.Revision}, fmt.Errorf("keys decision: %w", err)
	}
	// The revision that decided, for the audit trail.
	out.PolicyRevision = d.Revision
	return out, nil
}

var _ keystore.NetworkAuthorizer = Policy{}

// AuthorizeIPRestrictions implements keystore.NetworkAuthorizer with the
// network policy (data.network.decision).
func (a Policy) AuthorizeIPRestrictions(ctx context.Context, req keystore.NetworkRequest) (keystore.NetworkDecision, error) {
	in, err := ast.InterfaceToValue(req)
	if err != nil {
		return keystore.NetworkDecision{}, fmt.Errorf("network input: %w", err)
	}
	d, err := a.eng.Decide(ctx, engine.Network, in)
	if err != nil {
		return keystore.NetworkDecision{}, err
	}
	var out keystore.NetworkDecision
	if err := ast.As(d.Value, &out); err != nil {
		return keystore.NetworkDecision{}, fmt.Errorf("network decision: %w", err)
	}
	return out, nil
}
