package keystore_test

import (
	"context"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
)

func caller(t *testing.T, id string) context.Context {
	return keystore.WithCaller(t.Context(), keystore.Caller{Address: "192.0.2.7", RequestID: id})
}

// fullTrail reads every page of service's trail with q's filters.
func fullTrail(t *testing.T, s *keystore.Store, token, service string, q keystore.AuditQuery) []keystore.AuditEntry {
	t.Helper()
	var all []keystore.AuditEntry
	for {
		p, err := s.Audit(t.Context(), token, service, q)
		if err != nil {
			t.Fatalf("Audit: %v", err)
		}
		all = append(all, p.Entries...)
		if p.Next == 0 {
			return all
		}
		q.Before = p.Next
	}
}
