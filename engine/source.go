package engine

import "context"

// Source is where a policy set comes from: a directory ([DirSource], the
// default) or an OPA bundle ([BundleSource]). The engine calls Load on every
// reload, serialised; a Source whose content has not changed may return the
// set it returned before (the engine then reports the reload unchanged) or
// the same error again.
type Source interface {
	// Load returns the complete, compiled policy set with one prepared
	// query per entrypoint, or an error; never half a set.
	Load(ctx context.Context, entrypoints []string) (*PolicySet, error)
	// String names the source for status and logs ("directory policies").
	String() string
}

// DirSource loads policies and policy data from a directory tree; see
// [Load].
type DirSource string

// Load implements Source.
func (d DirSource) Load(ctx context.Context, entrypoints []string) (*PolicySet, error) {
	return Load(ctx, string(d), entrypoints)
}

func (d DirSource) String() string { return "directory " + string(d) }
