package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestPublicError: what Status says of a change-feed error names its kind,
// never the driver's text (host, user, database).
func TestPublicError(t *testing.T) {
	secretish := "failed to connect to `user=keygate database=prod`: 10.0.0.5:5432"
	for _, tc := range []struct {
		note string
		err  error
		want string
	}{
		{"server error", fmt.Errorf("sync: %w", &pgconn.PgError{Code: "57P01", Message: secretish}), "database error 57P01"},
		{"connect", fmt.Errorf("listen: %w", &pgconn.ConnectError{Config: &pgconn.Config{Host: "10.0.0.5", User: "keygate", Database: "prod"}}), "cannot connect"},
		{"timeout", fmt.Errorf("head: %w", context.DeadlineExceeded), "did not answer in time"},
		{"other", errors.New(secretish), "change feed failed"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			got := publicError(tc.err)
			if !strings.Contains(got, tc.want) {
				t.Errorf("publicError = %q, want it to say %q", got, tc.want)
			}
			for _, leak := range []string{"10.0.0.5", "keygate database", "user=", "prod"} {
				if strings.Contains(got, leak) {
					t.Errorf("publicError = %q shows %q", got, leak)
				}
			}
		})
	}
}
