package postgres

import (
	"errors"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/internal/keystore"
)

// TestDBErrorMapping: a lock timeout and a statement timeout of a key write
// are 503 store_busy ("nothing changed, retry"); other database failures
// 503 store_unavailable; the store's own errors pass through.
func TestDBErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code string
	}{
		{"lock timeout", &pgconn.PgError{Code: "55P03", Message: "canceling statement due to lock timeout"}, keystore.CodeStoreBusy},
		{"statement timeout", &pgconn.PgError{Code: "57014", Message: "canceling statement due to statement timeout"}, keystore.CodeStoreBusy},
		{"connection failure", &pgconn.PgError{Code: "08006"}, keystore.CodeStoreUnavailable},
		{"shutdown", &pgconn.PgError{Code: "57P01"}, keystore.CodeStoreUnavailable},
		{"network", errors.New("read: connection reset by peer"), keystore.CodeStoreUnavailable},
		{"ours", &keystore.Error{Status: http.StatusNotFound, Code: keystore.CodeKeyNotFound, Message: "x"}, keystore.CodeKeyNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ke *keystore.Error
			if err := dbError("lock service", tc.err); !errors.As(err, &ke) || ke.Code != tc.code {
				t.Fatalf("dbError = %v, want code %s", err, tc.code)
			}
			if tc.code != keystore.CodeKeyNotFound && ke.Status != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503", ke.Status)
			}
		})
	}
}
