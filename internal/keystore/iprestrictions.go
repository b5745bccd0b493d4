package keystore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
)

// API IP restriction settings (microCMS "APIのIP制限"): per service, an
// allow-list for every API (Default) and per API (APIs), an API's own list
// replacing the default. What they mean is policy (data.network); the store
// keeps them, durably, and asks data.network.decision before every read and
// write of them.
//
// Durability: the settings are not records of the key journal. They live in a
// file of their own beside the state, <state>.ip-restrictions.json, replaced
// as a whole (temp file, fsync, rename, fsync of the directory) under the
// store's write lock, inside the same authorize-then-write path as a key
// write, and swapped into memory only after the file is durable. A setting is
// small and replaced at once, so a whole-file rewrite per write is the whole
// journal it needs; keeping it out of the key snapshot and log leaves their
// format (and the backends being built on it) untouched. When no such file
// exists, data/ip-restrictions.json (optional) seeds it.
//
// On PostgreSQL (--store) the settings are rows of ip_restrictions (migration
// 0003), written like a key: one READ COMMITTED transaction that locks the
// service row, asks the network policy again on that row's plan, writes the
// setting, takes the next revision and records a change row of op "ip"
// (postgres/ip.go, postgres/tx.go). Every replica applies it from the change feed, or loads
// it with a full resync, into the same in-memory ipState the decision path
// reads; the decision path never asks the database.

// IPRestrictions is one service's setting: {"default": [...], "apis":
// {"<endpoint>": [...]}}. Entries are IPv4/IPv6 addresses or CIDRs.
type IPRestrictions struct {
	Default []string            `json:"default"`
	APIs    map[string][]string `json:"apis"`
}

// Empty reports whether the setting restricts nothing.
func (r *IPRestrictions) Empty() bool {
	if r == nil {
		return true
	}
	if len(r.Default) > 0 {
		return false
	}
	for _, l := range r.APIs {
		if len(l) > 0 {
			return false
		}
	}
	// An API with an empty list of its own still replaces the default, but
	// with an empty default there is nothing to replace.
	return true
}

func (r *IPRestrictions) Normalized() IPRestrictions {
	out := IPRestrictions{Default: slices.Clone(r.Default), APIs: make(map[string][]string, len(r.APIs))}
	if out.Default == nil {
		out.Default = []string{}
	}
	for api, l := range r.APIs {
		if l == nil {
			l = []string{}
		}
		out.APIs[api] = slices.Clone(l)
	}
	return out
}

// Actions of the network policy (`input.action`).
const (
	ActionReadIPRestrictions   = "read"
	ActionUpdateIPRestrictions = "update"
)

// NetworkRequest marshals to exactly the input of data.network.decision.
type NetworkRequest struct {
	Action  string       `json:"action"`
	Service ServiceInput `json:"service"`
	// Member is nil (and omitted) when the bearer token matches nobody.
	Member *Member `json:"member,omitempty"`
	// Settings is the proposed setting, for update only.
	Settings *IPRestrictions `json:"settings,omitempty"`
}

// NetworkDecision is data.network.decision.
type NetworkDecision struct {
	Allow      bool        `json:"allow"`
	Status     int         `json:"status"`
	Code       string      `json:"code"`
	Message    string      `json:"message"`
	Violations []Violation `json:"violations"`
	Limit      int         `json:"limit"`
}

// NetworkAuthorizer decides reads and writes of IP restriction settings. The
// Authorizer given to Open implements it when the policy has data.network; a
// store whose Authorizer does not refuses every such request (fail closed).
type NetworkAuthorizer interface {
	AuthorizeIPRestrictions(ctx context.Context, req NetworkRequest) (NetworkDecision, error)
}

// Structural limits on a setting, checked before the policy sees it (as
// checkSpec for keys): resource limits, not the plan's.
const (
	maxIPAPIs       = 1000
	maxIPEntries    = 1000 // per list; the plans allow at most 100
	maxIPEntryBytes = 64   // "ffff:…/128" is 43
)

func CheckIPRestrictions(r *IPRestrictions) (field, reason string, ok bool) {
	if len(r.APIs) > maxIPAPIs {
		return "apis", fmt.Sprintf("more than %d APIs", maxIPAPIs), false
	}
	check := func(name string, l []string) (string, string, bool) {
		if len(l) > maxIPEntries {
			return name, fmt.Sprintf("more than %d entries", maxIPEntries), false
		}
		for i, e := range l {
			if len(e) > maxIPEntryBytes {
				return fmt.Sprintf("%s[%d]", name, i), fmt.Sprintf("longer than %d bytes", maxIPEntryBytes), false
			}
		}
		return "", "", true
	}
	if f, why, ok := check("default", r.Default); !ok {
		return f, why, false
	}
	for api, l := range r.APIs {
		if len(api) > maxEndpointBytes || !endpointPattern.MatchString(api) {
			return "apis." + api, fmt.Sprintf("API name must be 1-%d characters of a-z 0-9 _ - (microCMS endpoints are lower case)", maxEndpointBytes), false
		}
		if f, why, ok := check("apis."+api, l); !ok {
			return f, why, false
		}
	}
	return "", "", true
}

// ipState is the settings of every service, immutable once published.
type ipState struct {
	rev      uint64
	services map[string]*IPRestrictions
}

// IPSeedFile is the optional seed of the settings in data/.
const IPSeedFile = "ip-restrictions.json"

// ipStore holds the settings the decision path reads (see the comment at
// the top).
type ipStore struct {
	cur atomic.Pointer[ipState]
}

// ReadIPSeed reads data/ip-restrictions.json (optional: none is no setting).
func ReadIPSeed(dataDir string) (map[string]IPRestrictions, error) {
	services := map[string]IPRestrictions{}
	seed := filepath.Join(dataDir, IPSeedFile)
	data, err := os.ReadFile(seed)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return services, nil
	case err != nil:
		return nil, &DataError{File: seed, Reason: "cannot read", Err: err}
	}
	if err := DecodeStrict(seed, data, &services); err != nil {
		return nil, err
	}
	return services, nil
}

// newIPState checks and normalizes settings read from file into a state of
// revision rev.
func newIPState(rev uint64, file string, services map[string]IPRestrictions) (*ipState, error) {
	state := &ipState{rev: rev, services: make(map[string]*IPRestrictions, len(services))}
	for id, r := range services {
		if field, why, ok := CheckIPRestrictions(&r); !ok {
			return nil, &DataError{File: file, Field: "services." + id + "." + field, Reason: why}
		}
		n := r.Normalized()
		state.services[id] = &n
	}
	return state, nil
}

// IPRestrictions returns a service's setting and a revision that changes
// with any setting's change; ok is false when the service restricts nothing.
// It is the decision path's lookup: one atomic load, no lock. The returned
// setting is shared: treat it as read-only.
func (s *Store) IPRestrictions(service string) (r *IPRestrictions, rev uint64, ok bool) {
	if s.ip == nil {
		return nil, 0, false
	}
	st := s.ip.cur.Load()
	r = st.services[service]
	if r.Empty() {
		return nil, st.rev, false
	}
	return r, st.rev, true
}

// authorizeIP resolves the member and the service and asks the network
// policy; like authorize, an unknown service is reported only to an allowed
// member.
func (s *Store) authorizeIP(ctx context.Context, action, token, service string, settings *IPRestrictions) (*Member, error) {
	if err := ctx.Err(); err != nil {
		return nil, internal("request canceled", err)
	}
	txn := s.db.Txn(false)
	req := NetworkRequest{Action: action, Service: ServiceInput{ID: service}, Settings: settings}
	if token != "" {
		h := sha256.Sum256([]byte(token))
		if raw, err := txn.First(tableMembers, indexToken, &h); err != nil {
			return nil, internal("look up member", err)
		} else if raw != nil {
			req.Member = raw.(*Member)
		}
	}
	var svc *Service
	if raw, err := txn.First(tableServices, indexID, service); err != nil {
		return nil, internal("look up service", err)
	} else if raw != nil {
		svc = raw.(*Service)
		req.Service.Plan = svc.Plan
	}
	return s.decideIP(ctx, req, svc != nil)
}

// decideIP asks the network policy about req (its member nil when the
// token matches nobody) and turns a deny into an *Error; only then is an
// unknown service (known false) reported.
func (s *Store) decideIP(ctx context.Context, req NetworkRequest, known bool) (*Member, error) {
	action, service := req.Action, req.Service.ID
	na := s.network
	if na == nil {
		return nil, &Error{Status: http.StatusInternalServerError, Code: CodeAuthorizerFailed, Message: "authorization failed",
			Err: errors.New("the authorizer cannot decide IP restrictions")}
	}
	dec, err := na.AuthorizeIPRestrictions(ctx, req)
	if err != nil {
		s.log.Error("ip restriction authorization failed; denying", "action", action, "service", service, "err", err)
		return nil, &Error{Status: http.StatusInternalServerError, Code: CodeAuthorizerFailed, Message: "authorization failed", Err: fmt.Errorf("authorize ip restrictions %s: %w", action, err)}
	}
	if !dec.Allow {
		e := &Error{Status: dec.Status, Code: dec.Code, Message: dec.Message}
		if dec.Status == http.StatusUnprocessableEntity {
			e.Violations = dec.Violations
			if dec.Code == "ip_entry_limit_exceeded" {
				e.Limit = dec.Limit
			}
		}
		if e.Status < 400 || e.Status > 599 {
			e.Status = http.StatusForbidden
		}
		if e.Code == "" {
			e.Code = CodeForbidden
		}
		if e.Message == "" {
			e.Message = http.StatusText(e.Status)
		}
		return nil, e
	}
	if req.Member == nil {
		return nil, &Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "unknown member token"}
	}
	if !known {
		return nil, notFound(CodeServiceNotFound, fmt.Sprintf("service %q not found", service))
	}
	return req.Member, nil
}

// GetIPRestrictions returns a service's setting (admins only, by policy);
// a service without one has the empty setting.
func (s *Store) GetIPRestrictions(ctx context.Context, token, service string) (IPRestrictions, error) {
	if err := s.notLoaded(); err != nil {
		return IPRestrictions{}, err
	}
	if _, err := s.authorizeIP(ctx, ActionReadIPRestrictions, token, service, nil); err != nil {
		return IPRestrictions{}, err
	}
	if s.ip != nil {
		if r := s.ip.cur.Load().services[service]; r != nil {
			return r.Normalized(), nil
		}
	}
	return IPRestrictions{Default: []string{}, APIs: map[string][]string{}}, nil
}

// PutIPRestrictions replaces a service's setting as a whole. The policy
// decides (admin, plan, entries, the plan's limit) before and again under the
// write lock (on PostgreSQL: on the locked service row); the new setting is
// durable before it takes effect.
func (s *Store) PutIPRestrictions(ctx context.Context, token, service string, settings IPRestrictions) (IPRestrictions, error) {
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
	// Again on the authoritative state, in the write transaction: a member
	// or plan change since the screening counts.
	var member string
	err := s.backend.Update(ctx, service, func(tx Tx) error {
		req := NetworkRequest{Action: ActionUpdateIPRestrictions, Service: ServiceInput{ID: service}, Settings: &settings}
		if token != "" {
			m, err := tx.Member(ctx, sha256.Sum256([]byte(token)))
			if err != nil {
				return err
			}
			req.Member = m
		}
		svc, _, err := tx.Service(ctx, service)
		if err != nil {
			return err
		}
		if svc != nil {
			req.Service.Plan = svc.Plan
		}
		m, err := s.decideIP(ctx, req, svc != nil)
		if err != nil {
			return err
		}
		member = m.ID
		stored := settings.Normalized()
		return tx.PutIPRestrictions(ctx, service, &stored, member)
	})
	if err != nil {
		return IPRestrictions{}, err
	}
	s.log.Info("ip restrictions replaced", "service", service, "member", member,
		"default", len(settings.Default), "apis", len(settings.APIs))
	return settings, nil
}
