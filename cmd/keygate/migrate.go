package main

import (
	"context"
	"fmt"
	"io"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/keystore/local"
	"github.com/keygate/keygate/internal/keystore/postgres"
)

// migrateCmd applies the PostgreSQL schema and seeds an empty database, as
// `keygate serve --store` does at start, without serving; with --from-state
// it moves a single-node state file into the database.
func migrateCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", `Usage: keygate migrate --store URL [--data DIR] [--policies DIR] [--from-state FILE]

Applies keygate's schema to the PostgreSQL database at URL (versioned,
idempotent, in one transaction) and seeds an empty database once from DIR
(services, members and keys.json). With --from-state, the keys of a local
state file (.keygate/state.json and its log) are imported instead of
keys.json, and its IP restriction settings (<state>.ip-restrictions.json)
replace data/ip-restrictions.json; the database must hold no keys yet. Seed keys are checked by the
keys policy under --policies. KEYGATE_STORE sets --store.`, stderr)
	store := fs.String("store", "", "PostgreSQL connection string (postgres://user@host/db)")
	data := fs.String("data", "data", "directory of services.json, members.json and seed keys.json")
	policies := fs.String("policies", "policies", "directory of Rego policies (the keys policy checks seed keys)")
	fromState := fs.String("from-state", "", "import the keys of this local state file (stop the single-node keygate first)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := applyEnv(fs, getenv); err != nil {
		return err
	}
	if err := checkArgs(fs, args, "store"); err != nil {
		return err
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	eng, err := engine.New(ctx, *policies, engine.Options{Logger: log})
	if err != nil {
		return err
	}
	mopts := postgres.MigrateOptions{URL: *store, DataDir: *data, Authorizer: authz.New(eng), Logger: log}
	if *fromState != "" {
		// The state directory stays locked until the import is over.
		from, unlock, err := local.ReadState(*fromState, log)
		if err != nil {
			return err
		}
		defer unlock()
		mopts.From = from
	}
	res, err := postgres.Migrate(ctx, mopts)
	if err != nil {
		return err
	}
	switch {
	case *fromState != "":
		fmt.Fprintf(stdout, "schema versions applied now: %v; imported %d keys from %s (%d IP restriction settings, %d audit trail entries)\n", res.Applied, res.Keys, *fromState, res.IPRestrictions, res.AuditEntries)
	case res.Seeded:
		fmt.Fprintf(stdout, "schema versions applied now: %v; seeded the empty database from %s (%d keys, %d IP restriction settings)\n", res.Applied, *data, res.Keys, res.IPRestrictions)
	default:
		fmt.Fprintf(stdout, "schema versions applied now: %v; database already seeded\n", res.Applied)
	}
	return nil
}
