package keystore

import (
	"errors"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
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
		{"lock timeout", &pgconn.PgError{Code: "55P03", Message: "canceling statement due to lock timeout"}, CodeStoreBusy},
		{"statement timeout", &pgconn.PgError{Code: "57014", Message: "canceling statement due to statement timeout"}, CodeStoreBusy},
		{"connection failure", &pgconn.PgError{Code: "08006"}, CodeStoreUnavailable},
		{"shutdown", &pgconn.PgError{Code: "57P01"}, CodeStoreUnavailable},
		{"network", errors.New("read: connection reset by peer"), CodeStoreUnavailable},
		{"ours", notFound(CodeKeyNotFound, "x"), CodeKeyNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ke *Error
			if err := dbError("lock service", tc.err); !errors.As(err, &ke) || ke.Code != tc.code {
				t.Fatalf("dbError = %v, want code %s", err, tc.code)
			}
			if tc.code != CodeKeyNotFound && ke.Status != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503", ke.Status)
			}
		})
	}
}
