package portal

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var staticFS embed.FS

// asset is one embedded static file.
type asset struct {
	body   []byte
	ctype  string
	etag   string
	hashed string // the content-addressed name, like app.3f2a…c1.js
}

// assets serves the embedded files under Prefix+"static/". Pages link the
// content-addressed name, which may be cached for a year; the plain name
// stays valid for anyone who linked it, revalidated by ETag.
type assets struct {
	byName map[string]*asset // plain and hashed names
	plain  map[string]*asset
}

var contentTypes = map[string]string{
	".js":  "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
	".svg": "image/svg+xml",
}

func loadAssets() (*assets, error) {
	as := &assets{byName: map[string]*asset{}, plain: map[string]*asset{}}
	entries, err := fs.ReadDir(staticFS, "static")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		body, err := fs.ReadFile(staticFS, "static/"+name)
		if err != nil {
			return nil, err
		}
		ext := path.Ext(name)
		ctype, ok := contentTypes[ext]
		if !ok {
			return nil, fmt.Errorf("portal: static file %s has no known content type", name)
		}
		sum := sha256.Sum256(body)
		h := hex.EncodeToString(sum[:8])
		a := &asset{body: body, ctype: ctype, etag: `"` + h + `"`, hashed: strings.TrimSuffix(name, ext) + "." + h + ext}
		as.byName[name], as.byName[a.hashed], as.plain[name] = a, a, a
	}
	return as, nil
}

// url returns the content-addressed URL of a static file.
func (as *assets) url(name string) (string, error) {
	a, ok := as.plain[name]
	if !ok {
		return "", fmt.Errorf("portal: no static file %s", name)
	}
	return Prefix + "static/" + a.hashed, nil
}

func (as *assets) serve(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	a, ok := as.byName[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("ETag", a.etag)
	if name == a.hashed {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatch(match, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", fmt.Sprint(len(a.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(a.body)
	}
}

// etagMatch implements the weak comparison of If-None-Match (RFC 9110 §13.1.2).
func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}
