package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/keystore"
)

// ipTable names the settings' rows in errors about them.
const ipTable = "ip_restrictions"

// decodeIPRow reads the setting of an "ip" change row (empty: cleared).
func decodeIPRow(c change) (*keystore.IPRestrictions, error) {
	var r keystore.IPRestrictions
	if err := json.Unmarshal(c.row, &r); err != nil {
		return nil, fmt.Errorf("revision %d: %w", c.revision, err)
	}
	if field, why, ok := keystore.CheckIPRestrictions(&r); !ok {
		return nil, fmt.Errorf("revision %d: ip restrictions of %s: %s: %s", c.revision, c.service, field, why)
	}
	n := r.Normalized()
	return &n, nil
}

// readIPRows reads every service's setting in tx.
func readIPRows(ctx context.Context, tx pgx.Tx) (map[string]*keystore.IPRestrictions, error) {
	rows, err := tx.Query(ctx, `SELECT service, settings FROM ip_restrictions`)
	if err != nil {
		return nil, fmt.Errorf("read ip restrictions: %w", err)
	}
	services := map[string]keystore.IPRestrictions{}
	var id string
	var raw []byte
	if _, err := pgx.ForEachRow(rows, []any{&id, &raw}, func() error {
		var r keystore.IPRestrictions
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("service %s: %w", id, err)
		}
		services[id] = r
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read ip restrictions: %w", err)
	}
	st, err := keystore.NormalizeIPSettings(ipTable, services)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// insertIP writes seeded or imported settings (file names where they come
// from); a setting for a service the database does not have is refused.
func insertIP(ctx context.Context, tx pgx.Tx, file string, services map[string]keystore.IPRestrictions) (int, error) {
	if _, err := keystore.NormalizeIPSettings(file, services); err != nil {
		return 0, err
	}
	n := 0
	for _, id := range slices.Sorted(maps.Keys(services)) {
		src := services[id]
		r := src.Normalized()
		if len(r.Default) == 0 && len(r.APIs) == 0 {
			continue
		}
		row, err := json.Marshal(&r)
		if err != nil {
			return 0, fmt.Errorf("encode ip restrictions of %s: %w", id, err)
		}
		tag, err := tx.Exec(ctx, `INSERT INTO ip_restrictions (service, settings, updated_by)
			SELECT id, $2, 'seed' FROM services WHERE id = $1`, id, row)
		if err != nil {
			return 0, fmt.Errorf("insert ip restrictions of %s: %w", id, err)
		}
		if tag.RowsAffected() == 0 {
			return 0, &keystore.DataError{File: file, Field: id, Reason: fmt.Sprintf("unknown service %q", id)}
		}
		n++
	}
	return n, nil
}
