package keystore

import (
	"context"
	"net/http"
)

// KeyCount returns the number of keys of one service (what the plan's key
// limit counts).
func (s *Store) KeyCount(service string) int {
	n, err := countKeys(s.read(), service)
	if err != nil {
		return 0
	}
	return n
}

// PreviewCreate answers a key create as CreateKey would, without making it:
// the same structural checks, and the keys policy's decision (member, role,
// plan limit, configuration violations, advice) on the store as it is now.
// Nothing is written, journaled, audited or counted; the key in the answer
// has no id and there is no secret. The decision is the screening one a write
// takes first, on this replica's index: on PostgreSQL the write itself
// decides again under the service's lock, so a create racing another one
// can still be refused at the limit after a preview allowed it.
func (s *Store) PreviewCreate(ctx context.Context, token, service string, spec KeySpec) (Created, error) {
	spec = normalizeSpec(spec)
	g, err := s.preview(ctx, ActionCreate, token, service, &spec)
	if err != nil {
		return Created{}, err
	}
	now := s.stamp()
	k := Key{Service: service, Name: spec.Name, ContentAPI: spec.ContentAPI, ManagementAPI: spec.ManagementAPI,
		CreatedBy: g.member.ID, CreatedAt: now, UpdatedAt: now, Revision: 1}
	return Created{Key: k, Warnings: g.warnings}, nil
}

// PreviewUpdate answers a key update as UpdateKey would, without making it
// (see PreviewCreate): 404 for a key the service does not have.
func (s *Store) PreviewUpdate(ctx context.Context, token, service, id string, spec KeySpec) (Updated, error) {
	spec = normalizeSpec(spec)
	g, err := s.preview(ctx, ActionUpdate, token, service, &spec)
	if err != nil {
		return Updated{}, err
	}
	old, err := s.findKey(s.db.Txn(false), service, id)
	if err != nil {
		return Updated{}, err
	}
	k := old.clone()
	k.Name, k.ContentAPI, k.ManagementAPI = spec.Name, spec.ContentAPI, spec.ManagementAPI
	k.UpdatedAt = s.stamp()
	k.Revision++
	return Updated{Key: k, Warnings: g.warnings}, nil
}

// preview runs the checks a write runs before its backend: the structural
// limits, then the authorization on a read snapshot.
func (s *Store) preview(ctx context.Context, action, token, service string, spec *KeySpec) (*grant, error) {
	if err := s.notLoaded(); err != nil {
		return nil, err
	}
	if field, reason, ok := checkSpec(spec); !ok {
		return nil, specError(field, reason)
	}
	return s.authorize(ctx, s.db.Txn(false), action, token, service, spec)
}

// PreviewIPRestrictions answers a PUT of a service's IP restriction setting
// as PutIPRestrictions would, without making it: the same structural checks
// and the network policy's decision (member, role, plan feature, entries,
// entries per list) on the store as it is now. Nothing is written or
// audited; the answer is the setting the write would put in force.
func (s *Store) PreviewIPRestrictions(ctx context.Context, token, service string, settings IPRestrictions) (IPRestrictions, error) {
	if err := s.notLoaded(); err != nil {
		return IPRestrictions{}, err
	}
	settings = settings.Normalized()
	if field, why, ok := CheckIPRestrictions(&settings); !ok {
		return IPRestrictions{}, &Error{Status: http.StatusBadRequest, Code: "invalid_ip_restrictions", Message: field + ": " + why}
	}
	if _, err := s.authorizeIP(ctx, ActionUpdateIPRestrictions, token, service, &settings); err != nil {
		return IPRestrictions{}, err
	}
	return settings, nil
}
