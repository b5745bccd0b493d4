package reload

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReloadUnderLoad keeps several goroutines asking POST /v1/decide while
// the policy is reloaded 50 times, alternating between two valid versions
// (A: the shipped policy, the read key's GET is allowed; B: GET removed, a
// 405) with a broken edit between each. No request may fail or answer 5xx,
// and every answer must be the one of the revision it reports: a decision
// made by a half-swapped policy would show up as a mismatch.
func TestReloadUnderLoad(t *testing.T) {
	const (
		workers = 4
		reloads = 50
	)
	s := startServer(t, "--debounce=30ms")
	content := filepath.Join(s.policies, contentRego)
	a := readFile(t, content)
	b := versionB(t, a)
	revA := s.health(t).PolicyRevision
	revB := revisionIn(t, s.policies, b)
	if revA == revB {
		t.Fatal("versions A and B have the same revision")
	}
	broken := []func([]byte) []byte{
		func(p []byte) []byte { return append(slices.Clone(p), "\nis_broken if {\n"...) },
		func(p []byte) []byte {
			return append(slices.Clone(p), "\nis_broken if {\n\tinput.x == unbound\n}\n"...)
		},
		func(p []byte) []byte { return append(slices.Clone(p), "\nis_broken if {\n\tcount(42) > 1\n}\n"...) },
		func(p []byte) []byte { return bytes.ReplaceAll(p, []byte("decision := "), []byte("old_decision := ")) },
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var (
		wg            sync.WaitGroup
		byA, byB, bad atomic.Int64
		firstFailures = make(chan string, 10)
		reportFailure = func(msg string) {
			bad.Add(1)
			select {
			case firstFailures <- msg:
			default:
			}
		}
	)
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				d, err := s.decide(ctx, readKeyGET)
				if ctx.Err() != nil {
					return
				}
				switch {
				case err != nil:
					reportFailure(err.Error())
				case d.Status >= 500:
					reportFailure(fmt.Sprintf("5xx decision: %+v", d))
				default:
					if err := answerError(d, revA, revB); err != nil {
						reportFailure(err.Error())
					} else if d.PolicyRevision == revA {
						byA.Add(1)
					} else {
						byB.Add(1)
					}
				}
			}
		})
	}

	var latencies []time.Duration
	serving := a
	for i := range reloads {
		var next []byte
		valid := i%2 == 0
		switch {
		case i%4 == 0:
			next = b
		case i%4 == 2:
			next = a
		default:
			next = broken[(i/2)%len(broken)](serving)
		}
		at := time.Now()
		writeFile(t, content, next)
		if !valid {
			s.waitRejected(t, at, "")
			continue
		}
		want := revA
		if i%4 == 0 {
			want = revB
		}
		_, seen := s.waitRevision(t, want)
		latencies = append(latencies, seen.Sub(at))
		serving = next
	}
	cancel()
	wg.Wait()
	close(firstFailures)

	for msg := range firstFailures {
		t.Error(msg)
	}
	if n := bad.Load(); n != 0 {
		t.Errorf("%d failed, 5xx or mismatched decisions", n)
	}
	if byA.Load() == 0 || byB.Load() == 0 {
		t.Errorf("decisions by A: %d, by B: %d; want both versions exercised", byA.Load(), byB.Load())
	}
	med, worst := stats(latencies)
	t.Logf("under load (%d workers, --debounce=30ms): %d reloads (%d valid, %d broken), %d decisions (A %d, B %d), %d bad; write→serving median %s, max %s",
		workers, reloads, len(latencies), reloads-len(latencies), byA.Load()+byB.Load(), byA.Load(), byB.Load(), bad.Load(),
		med.Round(time.Millisecond), worst.Round(time.Millisecond))
}

// TestWriteToServing measures, with the default debounce (150 ms) and no
// other load, the time from a policy file write to the new revision showing
// in /health, over 50 edits alternating between versions A and B. It only
// reports the figures (go test -v); timings are not asserted.
func TestWriteToServing(t *testing.T) {
	const edits = 50
	s := startServer(t)
	content := filepath.Join(s.policies, contentRego)
	a := readFile(t, content)
	b := versionB(t, a)
	revA := s.health(t).PolicyRevision
	revB := revisionIn(t, s.policies, b)

	var latencies []time.Duration
	for i := range edits {
		body, want := b, revB
		if i%2 == 1 {
			body, want = a, revA
		}
		at := time.Now()
		writeFile(t, content, body)
		_, seen := s.waitRevision(t, want)
		latencies = append(latencies, seen.Sub(at))
		checkAnswer(t, s.mustDecide(t, readKeyGET), revA, revB)
	}
	med, worst := stats(latencies)
	sum := s.metric(t, `keygate_reload_duration_seconds_sum{kind="policies"}`)
	count := s.metric(t, `keygate_reload_duration_seconds_count{kind="policies"}`)
	t.Logf("write→serving over %d edits (--debounce=150ms, default): median %s, max %s; server-side policy reload mean %s over %v reloads",
		edits, med.Round(time.Millisecond), worst.Round(time.Millisecond),
		time.Duration(sum/count*float64(time.Second)).Round(100*time.Microsecond), count)
}

// revisionIn returns the revision the policy directory dir would have with
// content.rego replaced by content, compiled in a private copy.
func revisionIn(t *testing.T, dir string, content []byte) string {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "policies")
	if err := os.CopyFS(cp, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(cp, contentRego), content)
	return revisionOf(t, cp)
}

// stats returns the median and maximum of ds.
func stats(ds []time.Duration) (median, maximum time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)-1]
}
