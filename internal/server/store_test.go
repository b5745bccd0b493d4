package server_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/server"
)

// staleStore is a real local store whose freshness the test sets, as a
// shared store's would move.
type staleStore struct {
	*keystore.Store
	ready     atomic.Bool
	staleness atomic.Int64 // nanoseconds
}

func (s *staleStore) Status() keystore.StoreStatus {
	st := s.Store.Status()
	st.Kind, st.Ready, st.Staleness = keystore.StorePostgres, s.ready.Load(), time.Duration(s.staleness.Load())
	return st
}

func (s *staleStore) Stale(maxStaleness time.Duration) bool {
	if !s.ready.Load() {
		return true
	}
	return maxStaleness > 0 && time.Duration(s.staleness.Load()) > maxStaleness
}

// TestStaleStoreFailsClosed: past MaxStaleness (and before the first load)
// every decision is 503 store_stale, even one the cache holds as an allow;
// /health is 503 past ReadyMaxStaleness and before the first load.
func TestStaleStoreFailsClosed(t *testing.T) {
	eng, local := openDeps(t, "../../policies", copyTree(t, "../../data"))
	st := &staleStore{Store: local}
	st.ready.Store(true)
	h := server.New(eng, st, server.NewMetrics(local.KeyCounts), server.Options{
		Logger: slog.New(slog.DiscardHandler), ReadyMaxStaleness: 10 * time.Second, MaxStaleness: 60 * time.Second,
	}).Handler()
	decide := func() (allow bool, status int, code string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/decide", strings.NewReader(
			`{"service":"team-demo","method":"GET","path":"/api/v1/blogs","apiKey":"team-demo-read-key"}`)))
		var d struct {
			Allow  bool   `json:"allow"`
			Status int    `json:"status"`
			Code   string `json:"code"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		return d.Allow, d.Status, d.Code
	}
	health := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
		return rec.Code
	}
	for range 3 { // warm the decision cache
		if allow, status, code := decide(); !allow {
			t.Fatalf("fresh store: the demo key is denied (%d %s)", status, code)
		}
	}
	for _, tc := range []struct {
		name      string
		ready     bool
		staleness time.Duration
		allow     bool
		health    int
	}{
		{"fresh", true, 0, true, http.StatusOK},
		{"under both bounds", true, 9 * time.Second, true, http.StatusOK},
		{"past ready bound", true, 11 * time.Second, true, http.StatusServiceUnavailable},
		{"past max staleness", true, 61 * time.Second, false, http.StatusServiceUnavailable},
		{"not loaded", false, 0, false, http.StatusServiceUnavailable},
		{"fresh again", true, 0, true, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st.ready.Store(tc.ready)
			st.staleness.Store(int64(tc.staleness))
			allow, status, code := decide()
			if allow != tc.allow || (!allow && (status != http.StatusServiceUnavailable || code != "store_stale")) {
				t.Errorf("decision allow=%v status %d code %q, want allow=%v (or 503 store_stale)", allow, status, code, tc.allow)
			}
			if got := health(); got != tc.health {
				t.Errorf("/health %d, want %d", got, tc.health)
			}
		})
	}
}
