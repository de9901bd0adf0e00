// Package shape trims a JSON document to the fields a client's job needs:
// a Backend-for-Frontend hands each client (the browser, a partner's
// program) only what its profile allows, so a field an upstream adds later,
// or an internal one, does not leak by default.
//
// A Rule is an allowlist (only these fields) or a denylist (all but these).
// A path names a field through objects with dots, "address.city"; arrays
// are crossed transparently, so "cities.name" applies to every element of
// "cities", and "[]" may be written to say so ("cities[].name"). Where an
// allowlist expects an object and finds something else, it keeps nothing
// of it: an allowlist never passes what it does not name.
//
// Key order, numbers and strings are kept as the upstream wrote them; the
// output is compact (no insignificant whitespace).
package shape

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Limits on rules.
const (
	maxPaths = 256
	maxDepth = 32
	maxField = 256
)

// ErrNotJSON means the document is not one valid JSON value.
var ErrNotJSON = errors.New("not a JSON document")

// MaxNesting is how deep a document's arrays and objects may nest to be
// shaped. Arrays are crossed transparently and each level is decoded
// again, so shaping costs about the nesting times the size: bounded, it
// stays linear in the size (json.Valid alone allows 10 000 levels).
const MaxNesting = 32

// ErrTooDeep means the document nests deeper than MaxNesting.
var ErrTooDeep = fmt.Errorf("a JSON document nested deeper than %d levels", MaxNesting)

// Rule is a compiled allowlist or denylist. It is safe for concurrent use.
type Rule struct {
	allow bool
	root  *node
}

// node is one level of a rule: leaf means the whole value is named (kept
// by an allowlist, dropped by a denylist); fields name children.
type node struct {
	leaf   bool
	fields map[string]*node
}

// Allow compiles an allowlist.
func Allow(paths []string) (*Rule, error) { return compile(paths, true) }

// Deny compiles a denylist.
func Deny(paths []string) (*Rule, error) { return compile(paths, false) }

func compile(paths []string, allow bool) (*Rule, error) {
	if len(paths) == 0 {
		return nil, errors.New("shape: a rule needs at least one path")
	}
	if len(paths) > maxPaths {
		return nil, fmt.Errorf("shape: at most %d paths", maxPaths)
	}
	root := &node{}
	for _, p := range paths {
		segs, err := parsePath(p)
		if err != nil {
			return nil, err
		}
		n := root
		for _, s := range segs {
			if n.leaf {
				break // a shorter path already names the whole value
			}
			if n.fields == nil {
				n.fields = map[string]*node{}
			}
			child := n.fields[s]
			if child == nil {
				child = &node{}
				n.fields[s] = child
			}
			n = child
		}
		if len(segs) == 0 {
			return nil, fmt.Errorf("shape: path %q names the whole document", p)
		}
		n.leaf, n.fields = true, nil
	}
	return &Rule{allow: allow, root: root}, nil
}

// parsePath splits "a.b[].c" into [a b c]. A segment "[]" alone (a
// top-level array) adds nothing: arrays are crossed anyway.
func parsePath(p string) ([]string, error) {
	if p == "" || !utf8.ValidString(p) {
		return nil, fmt.Errorf("shape: invalid path %q", p)
	}
	var segs []string
	for _, s := range strings.Split(p, ".") {
		s = strings.TrimSuffix(s, "[]")
		if s == "" && len(segs) == 0 && strings.HasPrefix(p, "[]") {
			continue // "[].id": the elements of a top-level array
		}
		if s == "" || len(s) > maxField || strings.ContainsAny(s, "[]") {
			return nil, fmt.Errorf("shape: invalid path %q: a path is field names joined by dots, each optionally followed by []", p)
		}
		segs = append(segs, s)
	}
	if len(segs) > maxDepth {
		return nil, fmt.Errorf("shape: path %q is deeper than %d fields", p, maxDepth)
	}
	return segs, nil
}

// Apply returns doc trimmed by the rule, or ErrNotJSON or ErrTooDeep.
func (r *Rule) Apply(doc []byte) ([]byte, error) {
	if !json.Valid(doc) {
		return nil, ErrNotJSON
	}
	if nesting(doc) > MaxNesting {
		return nil, ErrTooDeep
	}
	var out bytes.Buffer
	out.Grow(len(doc))
	if !r.value(bytes.TrimSpace(doc), r.root, &out) {
		out.WriteString("null")
	}
	return out.Bytes(), nil
}

// value writes v (one valid JSON value) as n shapes it, and reports whether
// anything was written: an allowlist that expected an object and found a
// string writes nothing.
func (r *Rule) value(v []byte, n *node, out *bytes.Buffer) bool {
	if n.leaf || len(n.fields) == 0 {
		// Named whole (an allowlist keeps it; a denylist never calls here
		// for a leaf), or nothing below is named.
		_ = json.Compact(out, v) // v is valid JSON
		return true
	}
	switch v[0] {
	case '{':
		r.object(v, n, out)
		return true
	case '[':
		r.array(v, n, out)
		return true
	}
	if r.allow {
		return false
	}
	_ = json.Compact(out, v)
	return true
}

func (r *Rule) object(v []byte, n *node, out *bytes.Buffer) {
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	_, _ = dec.Token() // {
	out.WriteByte('{')
	first := true
	for dec.More() {
		tok, _ := dec.Token()
		key, _ := tok.(string)
		var raw json.RawMessage
		_ = dec.Decode(&raw) // v is valid JSON: neither can fail
		child := n.fields[key]
		switch {
		case r.allow && child == nil, !r.allow && child != nil && child.leaf:
			continue
		}
		mark := out.Len()
		if !first {
			out.WriteByte(',')
		}
		writeString(out, key)
		out.WriteByte(':')
		kept := true
		if child == nil {
			_ = json.Compact(out, raw) // a denylist keeps what it does not name
		} else {
			kept = r.value(bytes.TrimSpace(raw), child, out)
		}
		if !kept {
			out.Truncate(mark)
			continue
		}
		first = false
	}
	out.WriteByte('}')
}

func (r *Rule) array(v []byte, n *node, out *bytes.Buffer) {
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	_, _ = dec.Token() // [
	out.WriteByte('[')
	first := true
	for dec.More() {
		var raw json.RawMessage
		_ = dec.Decode(&raw)
		mark := out.Len()
		if !first {
			out.WriteByte(',')
		}
		if !r.value(bytes.TrimSpace(raw), n, out) {
			out.Truncate(mark)
			continue
		}
		first = false
	}
	out.WriteByte(']')
}

// writeString writes s as a JSON string, escaping only what JSON requires
// (and the line separators JavaScript once choked on).
func writeString(out *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	out.WriteByte('"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			out.WriteByte('\\')
			out.WriteRune(c)
		case c < 0x20 || c == 0x2028 || c == 0x2029:
			out.WriteString(`\u`)
			out.WriteByte(hex[c>>12&0xf])
			out.WriteByte(hex[c>>8&0xf])
			out.WriteByte(hex[c>>4&0xf])
			out.WriteByte(hex[c&0xf])
		default:
			out.WriteRune(c)
		}
	}
	out.WriteByte('"')
}

// ReadBounded reads all of r, or reports ErrTooLarge if it holds more than
// limit bytes: shaping needs the whole document, and must never grow
// without bound, nor pass a document it could not shape.
func ReadBounded(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, ErrTooLarge
	}
	return b, nil
}

// ErrTooLarge means a document is over the shaping limit.
var ErrTooLarge = errors.New("document larger than the shaping limit")

// nesting returns how deep the arrays and objects of a valid JSON
// document nest.
func nesting(doc []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(doc); i++ {
		c := doc[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			depth++
			deepest = max(deepest, depth)
		case ']', '}':
			depth--
		}
	}
	return deepest
}
