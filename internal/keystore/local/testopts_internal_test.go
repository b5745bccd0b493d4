package local

import (
	"context"

	"github.com/keygate/keygate/internal/keystore"
)

// testOptions are the options of a test store: the Store's and the
// driver's (whose fsys injects storage faults).
type testOptions struct {
	storeOptions
	Options
}

type storeOptions = keystore.Options

// openTest opens a Store over the local state of o.
func openTest(ctx context.Context, o testOptions) (*keystore.Store, error) {
	return keystore.New(ctx, New(o.Options), o.storeOptions)
}

// captureDriver is the local driver keeping the backend it opened, for
// tests that hold its lock or look at its files.
type captureDriver struct {
	opts    Options
	backend *localBackend
}

func (c *captureDriver) Open(ctx context.Context, env keystore.Env) (keystore.Backend, error) {
	b, err := open(ctx, New(c.opts).opts, env)
	if err != nil {
		return nil, err
	}
	c.backend = b
	return b, nil
}
