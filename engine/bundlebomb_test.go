package engine

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

// gzipMember compresses b as one gzip member; members concatenated are one
// valid gzip stream (as gzip.Reader reads it by default, and OPA with it).
func gzipMember(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tarHeader is the 512-byte block of one tar header, written by
// archive/tar and taken before any content.
func tarHeader(t testing.TB, h *tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(h); err != nil {
		t.Fatal(err)
	}
	// No Close: the content the header announces never follows.
	return buf.Bytes()
}

// headerBomb is a .tar.gz of a couple of hundred bytes whose one entry
// claims a terabyte.
func headerBomb(t testing.TB) []byte {
	t.Helper()
	return gzipMember(t, tarHeader(t, &tar.Header{Name: "policy.rego", Mode: 0o644, Size: 1 << 40, Typeflag: tar.TypeReg}))
}

// zeroBomb is a .tar.gz of about 1.5 MB that inflates to 1.5 GiB: files
// entries of size bytes each (honest headers), content all zeros, of the
// tar type typ. It is built from gzip members of 16 MiB of zeros each, so
// building it costs one compression of 16 MiB.
func zeroBomb(t testing.TB, typ byte, files int, size int64) []byte {
	t.Helper()
	const chunk = 16 << 20
	if size%chunk != 0 {
		t.Fatalf("size %d is not a multiple of %d", size, chunk)
	}
	zeros := gzipMember(t, make([]byte, chunk))
	var out bytes.Buffer
	for i := range files {
		out.Write(gzipMember(t, tarHeader(t, &tar.Header{Name: "f" + string(rune('a'+i%26)) + ".json", Mode: 0o644, Size: size, Typeflag: typ})))
		for range size / chunk {
			out.Write(zeros)
		}
	}
	out.Write(gzipMember(t, make([]byte, 1024))) // end of archive
	return out.Bytes()
}

// bombs are the hostile bundles of the memory tests.
func bombs(t testing.TB) []struct {
	name string
	body []byte
} {
	return []struct {
		name string
		body []byte
	}{
		{"header claims 1 TiB", headerBomb(t)},
		{"one honest 1.5 GiB file", zeroBomb(t, tar.TypeReg, 1, 1536<<20)},
		{"32 files of 48 MiB, each under the per-file bound", zeroBomb(t, tar.TypeReg, 32, 48<<20)},
		{"1.5 GiB in an entry type OPA skips", zeroBomb(t, 'Z', 1, 1536<<20)},
	}
}

// allocated runs f and returns the bytes it allocated on the heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// maxBombAlloc bounds what refusing one bomb may allocate: the bundle
// itself, at most DefaultMaxBundleBytes of inflated content and change.
const maxBombAlloc = 100 << 20

// TestBundleBombsRefusedWithinMemory: every bomb, from a file or over
// http, verified or not, is refused with errBundleTooLarge having allocated
// less than maxBombAlloc; a good bundle loaded before keeps serving.
func TestBundleBombsRefusedWithinMemory(t *testing.T) {
	ctx := t.Context()
	eps := []string{Content}
	good := writeBundle(t, "good", true)
	for _, bomb := range bombs(t) {
		t.Logf("%s: %d bytes", bomb.name, len(bomb.body))
		for _, verified := range []bool{false, true} {
			name := bomb.name
			if verified {
				name += ", verified"
			}
			t.Run(name, func(t *testing.T) {
				var body atomic.Pointer[[]byte]
				body.Store(&good)
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(*body.Load()) }))
				defer srv.Close()
				opts := BundleOptions{URL: srv.URL}
				if verified {
					opts.VerificationKey, opts.KeyAlgorithm = []byte("a shared secret of a reasonable length"), "HS256"
					good := signedBundle(t, "good", opts.VerificationKey, "HS256")
					body.Store(&good)
				}
				src, err := NewBundleSource(opts)
				if err != nil {
					t.Fatal(err)
				}
				eng, err := NewFromSource(ctx, src, Options{Entrypoints: eps})
				if err != nil {
					t.Fatal(err)
				}
				body.Store(&bomb.body)
				var rerr error
				n := allocated(func() { _, rerr = eng.Reload(ctx) })
				if !errors.Is(rerr, errBundleTooLarge) {
					t.Errorf("reload of the bomb: %v, want %v", rerr, errBundleTooLarge)
				}
				if n > maxBombAlloc {
					t.Errorf("refusing the bomb allocated %d MiB, want under %d MiB", n>>20, maxBombAlloc>>20)
				}
				t.Logf("allocated %d MiB: %v", n>>20, rerr)
				if eng.Revision() != "good" {
					t.Errorf("revision after the bomb %q, want the last good", eng.Revision())
				}
				if d, err := eng.Decide(ctx, Content, nil); err != nil || d.Value.String() != `{"allow": true}` {
					t.Errorf("decision after the bomb: %v, %v", d.Value, err)
				}
				if st := eng.Status(); st.LastResult != "error" || !strings.Contains(st.LastError, "too large") {
					t.Errorf("status after the bomb: %+v", st)
				}
			})
		}
	}
	t.Run("file source", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bundle.tar.gz")
		if err := os.WriteFile(path, headerBomb(t), 0o600); err != nil {
			t.Fatal(err)
		}
		src, err := NewBundleSource(BundleOptions{URL: "file://" + path})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.Load(ctx, eps); !errors.Is(err, errBundleTooLarge) {
			t.Fatalf("file bomb: %v", err)
		}
	})
}

// TestBundleDownloadBounded: a body beyond MaxBytes is refused, whether the
// server announces its length or not.
func TestBundleDownloadBounded(t *testing.T) {
	big := bytes.Repeat([]byte{'x'}, 2<<20)
	for _, announce := range []bool{true, false} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if !announce {
				w.Header().Set("Transfer-Encoding", "chunked")
				w.(http.Flusher).Flush()
			}
			_, _ = w.Write(big)
		}))
		src, err := NewBundleSource(BundleOptions{URL: srv.URL, MaxBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.Load(t.Context(), []string{Content}); !errors.Is(err, errBundleTooLarge) {
			t.Errorf("announced length %v: %v, want %v", announce, err, errBundleTooLarge)
		}
		srv.Close()
	}
}

// TestBoundedTarballBounds: a good bundle reads through the bounded loader,
// and not under a bound one byte short of what its files declare; the
// counting reader fails one byte past its limit.
func TestBoundedTarballBounds(t *testing.T) {
	ctx := context.Background()
	b := writeBundle(t, "r1", true)
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var declared int64
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		declared += h.Size
	}
	for _, c := range []struct {
		limit int64
		ok    bool
	}{{1 << 20, true}, {declared - 1, false}} {
		src := &BundleSource{maxSize: c.limit, url: mustURL(t, "file:///b")}
		set, err := src.compile(ctx, b, strings.Repeat("0", 64), []string{Content})
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, errBundleTooLarge)) || (err == nil && set.Revision != "r1") {
			t.Errorf("limit %d for files of %d bytes: %v, want ok=%v", c.limit, declared, err, c.ok)
		}
	}
	for _, c := range []struct {
		limit int64
		ok    bool
	}{{100, true}, {99, false}} {
		_, err := io.Copy(io.Discard, &countingReader{r: bytes.NewReader(make([]byte, 100)), limit: c.limit})
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, errBundleTooLarge)) {
			t.Errorf("100 bytes through a limit of %d: %v, want ok=%v", c.limit, err, c.ok)
		}
	}
}
