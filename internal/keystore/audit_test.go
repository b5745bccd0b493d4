package keystore_test

import (
	"context"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
)

func caller(t *testing.T, id string) context.Context {
	return keystore.WithCaller(t.Context(), keystore.Caller{Address: "192.0.2.7", RequestID: id})
}

// fullTrail reads every page of service's trail with q's filters.
func fullTrail(t *testing.T, s *keystore.Store, token, service string, q keystore.AuditQuery) []keystore.AuditEntry {
	t.Helper()
	return keystoretest.FullTrail(t, s, token, service, q)
}
