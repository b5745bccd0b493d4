package engine

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/loader/filter"
)

// errBundleTooLarge reports a bundle whose inflated content, or one of
// whose tar entries as its header declares it, exceeds the bound.
var errBundleTooLarge = errors.New("bundle too large")

// countingReader fails once more than limit bytes have been read through
// it: the bound on the inflated size of a gzip stream, whatever the
// archive inside claims.
type countingReader struct {
	r     io.Reader
	n     int64
	limit int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n > c.limit {
		return 0, fmt.Errorf("%w: inflates to more than %d bytes", errBundleTooLarge, c.limit)
	}
	if rest := c.limit + 1 - c.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.limit {
		return n, fmt.Errorf("%w: inflates to more than %d bytes", errBundleTooLarge, c.limit)
	}
	return n, err
}

// boundedTarball is a bundle.DirectoryLoader for a .tar.gz that reads the
// whole archive up front under one bound, before OPA's reader sees any of
// it: the inflated stream (tar headers, padding and skipped entries
// included) is at most limit bytes, and so is the sum of the sizes the
// regular files' headers declare. A header is checked before a byte of
// its file is buffered, so a header claiming a terabyte costs nothing.
// OPA's own tarball loader allocates what each header claims before
// reading; this one hands OPA the bytes it actually read.
type boundedTarball struct {
	r       io.Reader
	limit   int64
	perFile int64
	files   []*bytes.Buffer
	names   []string
	idx     int
	err     error
	read    bool
}

func newBoundedTarball(r io.Reader, limit int64) *boundedTarball {
	return &boundedTarball{r: r, limit: limit, perFile: limit}
}

// NextFile implements bundle.DirectoryLoader.
func (t *boundedTarball) NextFile() (*bundle.Descriptor, error) {
	if !t.read {
		t.read = true
		t.err = t.readAll()
	}
	if t.err != nil {
		return nil, t.err
	}
	if t.idx >= len(t.files) {
		return nil, io.EOF
	}
	i := t.idx
	t.idx++
	return bundle.NewDescriptor(filepath.Join("", t.names[i]), t.names[i], t.files[i]), nil
}

func (t *boundedTarball) readAll() error {
	gz, err := gzip.NewReader(t.r)
	if err != nil {
		return fmt.Errorf("archive read failed: %w", err)
	}
	defer gz.Close()
	tr := tar.NewReader(&countingReader{r: gz, limit: t.limit})
	var declared int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("archive read failed: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			// OPA reads regular files only; the tar reader skips the
			// rest's content, through the counting reader.
			continue
		}
		if h.Size < 0 || h.Size > t.perFile || h.Size > t.limit-declared {
			return fmt.Errorf("%w: %s declares %d bytes; at most %d bytes in all, %d per file", errBundleTooLarge, h.Name, h.Size, t.limit, t.perFile)
		}
		declared += h.Size
		buf := bytes.NewBuffer(make([]byte, 0, h.Size))
		if _, err := io.Copy(buf, tr); err != nil {
			return fmt.Errorf("archive read failed: %s: %w", h.Name, err)
		}
		t.files = append(t.files, buf)
		t.names = append(t.names, h.Name)
	}
}

// WithFilter implements bundle.DirectoryLoader; keygate reads whole bundles.
func (t *boundedTarball) WithFilter(filter.LoaderFilter) bundle.DirectoryLoader { return t }

// WithPathFormat implements bundle.DirectoryLoader; paths pass through as
// the archive names them, as with OPA's tarball loader.
func (t *boundedTarball) WithPathFormat(bundle.PathFormat) bundle.DirectoryLoader { return t }

// WithSizeLimitBytes implements bundle.DirectoryLoader: a bound on any one
// file, within the bound on the whole.
func (t *boundedTarball) WithSizeLimitBytes(n int64) bundle.DirectoryLoader {
	if n > 0 && n < t.limit {
		t.perFile = n
	}
	return t
}

// WithFollowSymlinks implements bundle.DirectoryLoader; an archive has no
// symlinks to follow.
func (t *boundedTarball) WithFollowSymlinks(bool) bundle.DirectoryLoader { return t }
