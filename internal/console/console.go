// Package console is keygate's key management console: static screens,
// embedded in the binary, that manage a service's API keys through keygate's
// own REST API on the same origin. It has no powers of its own; every
// decision stays in the API and its policies.
//
// The handler serves the assets with a strict Content-Security-Policy (no
// inline script or style, Trusted Types so that no string can become
// markup) and answers any other path under the console with the page, so
// that deep links such as services/{service}/keys open the screen they name.
package console

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// Prefix is where the server mounts the console.
const Prefix = "/console/"

// ContentSecurityPolicy is the policy of every console answer: scripts,
// styles and connections to the console's own origin only, no inline code,
// no framing, and Trusted Types with no policy at all, so that assigning a
// string to innerHTML (or any other script sink) throws.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'; trusted-types 'none'"

var mimeTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".png":  "image/png",
	".svg":  "image/svg+xml",
}

// Handler serves the console. It expects the full request path (it strips
// Prefix itself).
type Handler struct {
	assets fs.FS
	page   *template.Template
}

// New returns the console's handler over the embedded assets.
func New() (*Handler, error) {
	assets, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	page, err := template.ParseFS(assets, "index.html")
	if err != nil {
		return nil, err
	}
	return &Handler{assets: assets, page: page}, nil
}

func setHeaders(h http.Header, contentType string) {
	h.Set("Content-Type", contentType)
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cache-Control", "no-cache")
}

// ServeHTTP serves an asset by its path under Prefix, a 404 for a missing
// file (a name with an extension), and the page for any other path.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, Prefix)
	if !ok {
		http.Redirect(w, r, "console/", http.StatusMovedPermanently)
		return
	}
	if rest != "" && rest != "index.html" {
		if ct, known := mimeTypes[path.Ext(rest)]; known {
			b, err := fs.ReadFile(h.assets, rest)
			if err != nil || strings.Contains(rest, "..") {
				h.notFound(w)
				return
			}
			setHeaders(w.Header(), ct)
			_, _ = w.Write(b)
			return
		}
		if path.Ext(rest) != "" {
			h.notFound(w)
			return
		}
	}
	h.servePage(w, rest)
}

// servePage answers the page for a path rest under Prefix. Its asset URLs
// are relative to the console's root, computed from how deep rest is, so the
// console works behind a proxy that serves it under any path prefix (a
// <base> element would need base-uri, which the policy forbids).
func (h *Handler) servePage(w http.ResponseWriter, rest string) {
	root := "./"
	if n := strings.Count(rest, "/"); n > 0 {
		root = strings.Repeat("../", n)
	}
	var buf bytes.Buffer
	if err := h.page.Execute(&buf, struct{ Root string }{root}); err != nil {
		http.Error(w, "console page failed", http.StatusInternalServerError)
		return
	}
	setHeaders(w.Header(), mimeTypes[".html"])
	_, _ = w.Write(buf.Bytes())
}

func (h *Handler) notFound(w http.ResponseWriter) {
	setHeaders(w.Header(), "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte("404 page not found\n"))
}
