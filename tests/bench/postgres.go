package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/keygate/keygate/internal/pgtest"
)

// throwawayPostgres starts a PostgreSQL cluster in a temp dir (initdb,
// 127.0.0.1, trust authentication; see internal/pgtest) for target (p) and
// returns the connection string of a fresh database, which keygate seeds
// from the data dir like an empty state file. destroy stops the
// postmaster by its PID and removes the directory.
func throwawayPostgres(ctx context.Context, out io.Writer) (store string, destroy func(), err error) {
	bin, err := pgtest.FindBin()
	if err != nil {
		return "", nil, fmt.Errorf("target p: %w", err)
	}
	fmt.Fprintln(out, "starting a throwaway PostgreSQL (initdb into a temp dir) …")
	c, err := pgtest.New(bin)
	if err != nil {
		return "", nil, fmt.Errorf("target p: %w", err)
	}
	destroy = func() {
		if err := c.Destroy(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: stopping PostgreSQL:", err)
		}
	}
	if err := c.Start(); err != nil {
		destroy()
		return "", nil, fmt.Errorf("target p: %w\n%s", err, c.LogTail())
	}
	if store, err = c.NewDatabase(ctx); err != nil {
		destroy()
		return "", nil, fmt.Errorf("target p: %w", err)
	}
	return store, destroy, nil
}
