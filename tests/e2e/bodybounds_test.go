package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHostileBodiesAreRefusedAtOnce: the two bodies that took a keygate down
// through its duplicate-member scan — 1 MB of objects nested 10,000 deep
// (4.7 GB peak, 20-31 s, no answer) and one object of 60,000 members (6 s of
// CPU) — sent without a token to key create, four of each at once, are each
// answered 400 body_too_complex within seconds; keygate stays healthy, and
// its peak RSS stays under 300 MB (measured: 66 MB after the eight, about
// what it takes idle; the bound leaves room for a -race build).
func TestHostileBodiesAreRefusedAtOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	name := strings.Repeat("n", 94)
	deep := []byte(strings.Repeat(`{"`+name+`":`, 10_000) + "1" + strings.Repeat("}", 10_000))
	var wide bytes.Buffer
	wide.WriteString(`{"name":"x"`)
	for i := range 60_000 {
		fmt.Fprintf(&wide, `,"m%d":0`, i)
	}
	wide.WriteString("}")

	const perBody = 4
	const answerWithin = 10 * time.Second
	var wg sync.WaitGroup
	errs := make(chan error, 2*perBody)
	for _, body := range [][]byte{deep, wide.Bytes()} {
		for range perBody {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(t.Context(), answerWithin)
				defer cancel()
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.URL+"/v1/services/team-demo/keys", bytes.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- fmt.Errorf("a %d-byte body: no answer within %s: %w", len(body), answerWithin, err)
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				var p problem
				_ = json.Unmarshal(b, &p)
				if resp.StatusCode != http.StatusBadRequest || p.Code != "body_too_complex" {
					errs <- fmt.Errorf("a %d-byte body: %d %.200s, want 400 body_too_complex", len(body), resp.StatusCode, b)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if r := f.do(t, http.MethodGet, "/health", nil); r.status != http.StatusOK {
		t.Errorf("/health after the hostile bodies: %s", r)
	}
	const bound = 300 << 20
	if peak := peakRSS(t, f.PID()); peak > bound {
		t.Errorf("peak RSS %d MB, over %d MB", peak>>20, bound>>20)
	} else {
		t.Logf("peak RSS %d MB", peak>>20)
	}
}
