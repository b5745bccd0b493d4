package keystore

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// opIP is the change-log op of an IP restriction setting's write: its row is
// the service's whole setting after the write.
const opIP = "ip"

// ipTable names the settings' rows in errors about them.
const ipTable = "ip_restrictions"

// lookupMember finds the member of token in tx (nil when none matches).
func lookupMember(ctx context.Context, tx pgx.Tx, token string) (*Member, error) {
	if token == "" {
		return nil, nil
	}
	h := sha256.Sum256([]byte(token))
	m := &Member{tokenHash: h}
	err := tx.QueryRow(ctx, `SELECT id, service, role FROM members WHERE token_hash = $1`, h[:]).Scan(&m.ID, &m.Service, &m.Role)
	switch {
	case err == nil:
		return m, nil
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	default:
		return nil, err
	}
}

// putIP replaces a service's IP restriction setting with the discipline of a
// key write: one READ COMMITTED transaction, the service row locked, the
// network policy asked again with that row's plan (a plan changed since the
// screening counts), the setting written, the head revision taken last, a
// change row of op "ip", a notification, the commit; then it waits until
// the local index has applied the revision. A refused write rolls back and
// leaves no change row.
func (b *pgBackend) putIP(ctx context.Context, token, service string, settings *IPRestrictions) error {
	if b.readOnly {
		return readOnlyError()
	}
	s := b.s
	rowJSON, err := json.Marshal(settings)
	if err != nil {
		return internal("encode ip restrictions", err)
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	tx, err := b.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return dbError("begin", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	req := NetworkRequest{Action: ActionUpdateIPRestrictions, Service: ServiceInput{ID: service}, Settings: settings}
	if req.Member, err = lookupMember(ctx, tx, token); err != nil {
		return dbError("look up member", err)
	}
	known := true
	err = tx.QueryRow(ctx, `SELECT plan FROM services WHERE id = $1 FOR UPDATE`, service).Scan(&req.Service.Plan)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		known = false
	case err != nil:
		return dbError("lock service", err)
	}
	member, err := s.decideIP(ctx, req, known)
	if err != nil {
		return err
	}
	if len(settings.Default) == 0 && len(settings.APIs) == 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM ip_restrictions WHERE service = $1`, service); err != nil {
			return dbError("clear ip restrictions", err)
		}
	} else if _, err := tx.Exec(ctx, `INSERT INTO ip_restrictions (service, settings, updated_by) VALUES ($1, $2, $3)
		ON CONFLICT (service) DO UPDATE SET settings = excluded.settings, updated_by = excluded.updated_by, updated_at = now()`,
		service, rowJSON, member.ID); err != nil {
		return dbError("write ip restrictions", err)
	}
	var rev int64
	if err := tx.QueryRow(ctx, `UPDATE head SET revision = revision + 1 RETURNING revision`).Scan(&rev); err != nil {
		return dbError("take revision", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO changes (revision, op, key_id, service, row, actor) VALUES ($1, $2, '', $3, $4, $5)`,
		rev, opIP, service, rowJSON, member.ID); err != nil {
		return dbError("insert change", err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, strconv.FormatInt(rev, 10)); err != nil {
		return dbError("notify", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return dbError("commit", err)
	}
	s.log.Info("ip restrictions replaced", "service", service, "member", member.ID,
		"default", len(settings.Default), "apis", len(settings.APIs), "revision", rev)
	b.kick()
	if err := b.waitApplied(ctx, uint64(rev)); err != nil {
		s.log.Warn("ip restriction write committed but not yet in this replica's index", "revision", rev, "err", err)
	}
	return nil
}

// applyIP applies one "ip" change to next (a copy of the current settings,
// made on first use by the batch).
func applyIP(next *ipState, c change) error {
	var r IPRestrictions
	if err := json.Unmarshal(c.row, &r); err != nil {
		return fmt.Errorf("revision %d: %w", c.revision, err)
	}
	if field, why, ok := checkIPRestrictions(&r); !ok {
		return fmt.Errorf("revision %d: ip restrictions of %s: %s: %s", c.revision, c.service, field, why)
	}
	n := r.normalized()
	if len(n.Default) == 0 && len(n.APIs) == 0 {
		delete(next.services, c.service)
	} else {
		next.services[c.service] = &n
	}
	return nil
}

// nextIPState is a copy of the current settings under the next revision.
func (s *Store) nextIPState() *ipState {
	cur := s.ip.cur.Load()
	return &ipState{rev: cur.rev + 1, services: maps.Clone(cur.services)}
}

// readIPRows reads every service's setting in tx.
func readIPRows(ctx context.Context, tx pgx.Tx) (*ipState, error) {
	rows, err := tx.Query(ctx, `SELECT service, settings FROM ip_restrictions`)
	if err != nil {
		return nil, fmt.Errorf("read ip restrictions: %w", err)
	}
	services := map[string]IPRestrictions{}
	var id string
	var raw []byte
	if _, err := pgx.ForEachRow(rows, []any{&id, &raw}, func() error {
		var r IPRestrictions
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("service %s: %w", id, err)
		}
		services[id] = r
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read ip restrictions: %w", err)
	}
	return newIPState(0, ipTable, services)
}

// insertIP writes seeded or imported settings (file names where they come
// from); a setting for a service the database does not have is refused.
func insertIP(ctx context.Context, tx pgx.Tx, file string, services map[string]IPRestrictions) (int, error) {
	if _, err := newIPState(0, file, services); err != nil {
		return 0, err
	}
	n := 0
	for _, id := range slices.Sorted(maps.Keys(services)) {
		src := services[id]
		r := src.normalized()
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
			return 0, &DataError{File: file, Field: id, Reason: fmt.Sprintf("unknown service %q", id)}
		}
		n++
	}
	return n, nil
}
