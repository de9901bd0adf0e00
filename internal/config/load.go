package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/keywayhq/keyway/internal/duration"
	"gopkg.in/yaml.v3"
)

const (
	// maxFileSize bounds the file Load reads; a config is a few KiB.
	maxFileSize = 4 << 20
	// maxSteps bounds the values decoded from one file: YAML aliases can
	// make a small file expand into a very large tree.
	maxSteps = 1 << 18
	// maxDepth bounds nesting, which merge keys can chain.
	maxDepth = 1000
)

// Load reads the YAML file at path, overlays it on Default, applies the
// environment (see ApplyEnv), fills the derived defaults and validates the
// result. Decoding is strict: unknown keys, duplicate keys and values of the
// wrong type or format are errors; top-level keys that start with "x-" are
// ignored, to hold YAML anchors. Every problem found, in decoding and in
// validation, is reported at once as Errors located at their file:line.
// An empty file yields the defaults.
func Load(path string) (*Config, error) { return LoadEnv(path, os.Getenv) }

// LoadEnv is Load with the environment read through getenv.
func LoadEnv(path string, getenv func(string) string) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return load(path, data, getenv)
}

// readFile reads a config file of at most maxFileSize bytes.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path) //nolint:gosec // the operator names the config file on purpose
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	_ = f.Close() // read-only: a close error loses nothing
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	if len(data) > maxFileSize {
		return nil, Errors{{File: path, Msg: "file is larger than 4 MiB; is it really a keyway config?"}}
	}
	return data, nil
}

// load is Load without the file system, for tests and fuzzing.
func load(file string, data []byte, getenv func(string) string) (*Config, error) {
	c, errs := loadAll(file, data, getenv)
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// loadAll decodes and validates data, and returns the config with every
// problem found: the config is nil only when the document itself could not
// be decoded. A config with problems is only for Lint (Check): never run it.
func loadAll(file string, data []byte, getenv func(string) string) (*Config, Errors) {
	c := defaults()
	d := &decoder{file: file, lines: map[string]int{}, failed: map[string]bool{}, active: map[*yaml.Node]bool{}}
	if !d.document(data, reflect.ValueOf(c).Elem()) {
		return nil, d.errs.sorted()
	}
	c.src = source{file: file, lines: d.lines}
	c.ApplyEnv(getenv)
	c.fillDerived()
	errs := d.errs
	var verrs Errors
	if errors.As(c.Validate(), &verrs) {
		for _, e := range verrs {
			// A value that failed to decode was left at its default;
			// what validation says about it would only be noise.
			if !d.failedAt(e.path) {
				errs = append(errs, e)
			}
		}
	}
	if len(errs) > 0 {
		return c, errs.sorted()
	}
	return c, nil
}

// Check is what `keyway check` reports of the file at path: every problem
// (as Errors) and every security warning, the warnings even when there are
// problems, as far as the file could be read.
func Check(path string, getenv func(string) string) ([]Warning, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	c, errs := loadAll(path, data, getenv)
	var warns []Warning
	if c != nil {
		warns = c.Lint()
	}
	if len(errs) > 0 {
		return warns, errs
	}
	return warns, nil
}

// decoder overlays a yaml.Node tree on a Go value, guided by the yaml
// struct tags. Unlike yaml.v3's KnownFields it keeps going after a problem,
// so that one run reports all of them, and it records the line of every
// setting for Validate and Lint.
type decoder struct {
	file   string
	lines  map[string]int  // field path → line of its key
	failed map[string]bool // field paths whose value was rejected
	errs   Errors
	steps  int
	active map[*yaml.Node]bool // nodes being decoded: aliases can form cycles
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
	prefixType   = reflect.TypeFor[netip.Prefix]()
)

// errorf records a problem at line. A non-empty path marks that setting as
// rejected.
func (d *decoder) errorf(line int, path, hint, format string, args ...any) {
	if path != "" {
		d.failed[path] = true
	}
	if len(d.errs) <= maxErrors {
		d.errs = append(d.errs, &Error{File: d.file, Line: line, Msg: fmt.Sprintf(format, args...), Hint: hint, path: path})
	}
}

// failedAt reports whether path is, or lies inside, a rejected setting.
func (d *decoder) failedAt(path string) bool {
	for p := path; p != ""; p = parent(p) {
		if d.failed[p] {
			return true
		}
	}
	return false
}

// document decodes data into v. It reports false if data is not usable
// YAML at all, in which case validating v would be pointless.
func (d *decoder) document(data []byte, v reflect.Value) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // empty, or only comments
			return true
		}
		d.syntaxError(err, data)
		return false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.errorf(extra.Line, "", `remove the "---" and what follows`, "the file holds more than one YAML document")
	} else if !errors.Is(err, io.EOF) {
		d.syntaxError(err, data)
		return false
	}
	if len(doc.Content) == 0 {
		return true
	}
	root := resolve(doc.Content[0])
	switch {
	case isNull(root):
	case root.Kind != yaml.MappingNode:
		d.errorf(root.Line, "", `start with a setting such as "listen: 127.0.0.1:8443"`,
			"expected a mapping of settings at the top level, got %s", describe(root))
		return false
	default:
		d.value(root, v, "")
	}
	return d.steps <= maxSteps
}

// yamlLine matches yaml.v3's positioned syntax errors, and unknownAnchor
// one that has no position.
var (
	yamlLine      = regexp.MustCompile(`(?s)^yaml: line (\d+): (.*)$`)
	unknownAnchor = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)
)

// syntaxError records a YAML syntax error at its line.
func (d *decoder) syntaxError(err error, data []byte) {
	msg, line := strings.TrimPrefix(err.Error(), "yaml: "), 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else if m := unknownAnchor.FindStringSubmatch(msg); m != nil {
		// yaml.v3 does not say where; the first use is a good guess.
		if i := bytes.Index(data, []byte("*"+m[1])); i >= 0 {
			line = 1 + bytes.Count(data[:i], []byte("\n"))
		}
	}
	hint := ""
	if lines := bytes.Split(data, []byte("\n")); line > 0 && line <= len(lines) && bytes.Contains(lines[line-1], []byte("\t")) {
		hint = "indent with spaces: YAML does not allow tabs"
	}
	d.errorf(line, "", hint, "invalid YAML: %s", msg)
}

// value decodes n into v, which is addressable. path names the setting
// ("routes[2].upstream"). A null leaves v as it was: "listen:" with nothing
// after it keeps the default.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	n = resolve(n)
	if d.steps++; d.steps > maxSteps {
		if d.steps == maxSteps+1 {
			d.errorf(n.Line, "", "", "the document expands too far through aliases")
		}
		return
	}
	if isNull(n) {
		return
	}
	if v.Kind() == reflect.Pointer {
		p := reflect.New(v.Type().Elem()) // never write through a pointer a copy may share
		if !v.IsNil() {
			p.Elem().Set(v.Elem())
		}
		d.value(n, p.Elem(), path)
		v.Set(p)
		return
	}
	if !d.enter(n, path) {
		return
	}
	defer delete(d.active, n)
	switch v.Type() {
	case durationType:
		if s, ok := d.scalar(n, path, "a duration"); ok {
			dur, err := duration.Parse(s)
			if err != nil {
				d.errorf(n.Line, path, durationHint(s), "%s: invalid duration %q", path, s)
				return
			}
			v.SetInt(int64(dur))
		}
		return
	case byteSizeType:
		if s, ok := d.scalar(n, path, "a byte size"); ok {
			b, err := ParseByteSize(s)
			if err != nil {
				d.errorf(n.Line, path, "use sizes like 512KiB, 1MiB or 1048576; units are B, KB, MB, GB, KiB, MiB, GiB",
					"%s: %v", path, err)
				return
			}
			v.SetInt(int64(b))
		}
		return
	case prefixType:
		if s, ok := d.scalar(n, path, "a CIDR or IP address"); ok {
			p, hint, err := parsePrefix(s)
			if err != nil {
				d.errorf(n.Line, path, hint, "%s: %v", path, err)
				return
			}
			v.Set(reflect.ValueOf(p))
		}
		return
	}
	switch v.Kind() {
	case reflect.String:
		if s, ok := d.scalar(n, path, "a string"); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		s, ok := d.scalar(n, path, "true or false")
		switch strings.ToLower(s) {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			if ok {
				d.errorf(n.Line, path, "write true or false", "%s: expected true or false, got %q", path, s)
			}
		}
	case reflect.Int, reflect.Int64:
		if s, ok := d.scalar(n, path, "an integer"); ok {
			i, err := strconv.ParseInt(s, 10, v.Type().Bits()) // base 10: YAML 1.2 reads 010 as ten
			if err != nil {
				d.errorf(n.Line, path, "", "%s: expected an integer, got %q", path, s)
				return
			}
			v.SetInt(i)
		}
	case reflect.Slice:
		d.slice(n, v, path)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.errorf(n.Line, path, "", "%s: expected a mapping of names to settings, got %s", path, describe(n))
			return
		}
		m := reflect.MakeMap(v.Type())
		d.mapEntries(n, m, path)
		v.Set(m)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.errorf(n.Line, path, "", "%s: expected a mapping of settings, got %s", path, describe(n))
			return
		}
		d.structFields(n, v, path)
	default:
		panic("config: cannot decode into " + v.Type().String()) // a new field type needs a case here
	}
}

// enter marks n as being decoded, or records that it contains itself
// through an alias and must not be entered again.
func (d *decoder) enter(n *yaml.Node, path string) bool {
	if d.active[n] {
		d.errorf(n.Line, path, "", "%s: an alias refers to a value that contains it", label(path))
		return false
	}
	if len(d.active) >= maxDepth {
		d.errorf(n.Line, path, "", "%s: nested too deeply", label(path))
		return false
	}
	d.active[n] = true
	return true
}

// scalar returns n's text, or records that n is not a scalar.
func (d *decoder) scalar(n *yaml.Node, path, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n.Line, path, "", "%s: expected %s, got %s", path, want, describe(n))
		return "", false
	}
	return n.Value, true
}

// slice replaces v with the elements of the sequence n.
func (d *decoder) slice(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		hint := ""
		if n.Kind == yaml.ScalarNode {
			hint = fmt.Sprintf("write [%s], or one %q line per item", n.Value, "- item")
		}
		d.errorf(n.Line, path, hint, "%s: expected a list, got %s", path, describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, e := range n.Content {
		ep := path + "[" + strconv.Itoa(i) + "]"
		d.lines[ep] = e.Line
		if isNull(resolve(e)) {
			d.errorf(e.Line, ep, "", "%s: empty list item", ep)
			continue
		}
		d.value(e, s.Index(i), ep)
	}
	v.Set(s)
}

// mapEntries decodes the mapping n into the map m, each entry starting
// from the zero value. Explicit entries replace those from merge keys.
func (d *decoder) mapEntries(n *yaml.Node, m reflect.Value, path string) {
	d.merges(n, path, func(src *yaml.Node) { d.mapEntries(src, m, path) })
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		name, ok := d.key(k, seen, path)
		if !ok {
			continue
		}
		if name == "" {
			d.errorf(k.Line, path, "", "%s: empty name", path)
			continue
		}
		ep := path + "." + name
		d.lines[ep] = k.Line
		e := reflect.New(m.Type().Elem()).Elem()
		d.value(val, e, ep)
		m.SetMapIndex(reflect.ValueOf(name).Convert(m.Type().Key()), e)
	}
}

// structFields decodes the mapping n into the struct v, overlaying the
// values v already holds. Explicit keys override those from merge keys.
func (d *decoder) structFields(n *yaml.Node, v reflect.Value, path string) {
	d.merges(n, path, func(src *yaml.Node) { d.structFields(src, v, path) })
	fields := fieldsOf(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		name, ok := d.key(k, seen, path)
		if !ok {
			continue
		}
		if path == "" && strings.HasPrefix(name, "x-") {
			continue // a place for anchors, as in Compose files
		}
		fp := join(path, name)
		idx, known := fields[name]
		if !known {
			hint := ""
			if s := suggest(name, fieldNames(v.Type())); s != "" {
				hint = fmt.Sprintf("did you mean %q?", s)
				fp = join(path, s) // its absence would only be noise
			} else {
				hint = "valid keys are " + strings.Join(fieldNames(v.Type()), ", ")
				fp = ""
			}
			d.errorf(k.Line, fp, hint, "unknown key %q%s", name, in(path))
			continue
		}
		if isNull(resolve(val)) {
			continue
		}
		d.lines[fp] = k.Line
		d.value(val, v.Field(idx), fp)
	}
}

// merges calls fn with each mapping that n merges in through "<<" keys,
// last first, so that, as YAML specifies, earlier sources win.
func (d *decoder) merges(n *yaml.Node, path string, fn func(*yaml.Node)) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !isMerge(n.Content[i]) {
			continue
		}
		src := resolve(n.Content[i+1])
		srcs := []*yaml.Node{src}
		if src.Kind == yaml.SequenceNode {
			srcs = src.Content
		}
		for j := len(srcs) - 1; j >= 0; j-- {
			s := resolve(srcs[j])
			if d.steps++; d.steps > maxSteps {
				return
			}
			if s.Kind != yaml.MappingNode {
				d.errorf(s.Line, "", "", "%s: a merge key needs a mapping or a list of them, got %s", join(path, "<<"), describe(s))
				continue
			}
			if d.enter(s, path) {
				fn(s)
				delete(d.active, s)
			}
		}
	}
}

// key returns the name of mapping key k, or records why it is not usable:
// not a string, a merge key (handled by merges), or a duplicate.
func (d *decoder) key(k *yaml.Node, seen map[string]int, path string) (string, bool) {
	k = resolve(k)
	if isMerge(k) {
		return "", false
	}
	if k.Kind != yaml.ScalarNode {
		d.errorf(k.Line, "", "", "keys must be strings, got %s%s", describe(k), in(path))
		return "", false
	}
	if first, dup := seen[k.Value]; dup {
		d.errorf(k.Line, join(path, k.Value), "remove one of them", "duplicate key %q: first set at line %d", k.Value, first)
		return "", false
	}
	seen[k.Value] = k.Line
	return k.Value, true
}

// fieldsOf maps the yaml names of t's fields to their indexes.
func fieldsOf(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			m[name] = i
		}
	}
	return m
}

// fieldNames lists the yaml names of t's fields in declaration order.
func fieldNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			names = append(names, name)
		}
	}
	return names
}

// yamlName is the key of field f in YAML, or "" if f is not decoded.
func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if !f.IsExported() || name == "-" {
		return ""
	}
	return name
}

// label names the setting at path in messages.
func label(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}

// in returns " in path" to place a key in messages, or "" at the top level.
func in(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}

// join appends a key to a field path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func isMerge(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!merge"
}

// describe names the kind of n for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int", "!!float":
			return fmt.Sprintf("the number %s", n.Value)
		case "!!bool":
			return fmt.Sprintf("the boolean %s", n.Value)
		case "!!null":
			return "nothing"
		}
		return fmt.Sprintf("the string %q", n.Value)
	default:
		return "a document"
	}
}

// durationHint suggests how to write a duration that did not parse.
func durationHint(s string) string {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return fmt.Sprintf("add a unit, like %ds", n)
	}
	return "use durations like 30s, 5m, 12h or 90d"
}

// parsePrefix parses a CIDR, or a single IP address as a prefix that holds
// only it. IPv4-mapped IPv6 forms are unmapped, since that is how Go
// reports IPv4 peers. The hint suggests a fix when there is an error.
func parsePrefix(s string) (p netip.Prefix, hint string, err error) {
	const usage = "use CIDR notation like 10.0.0.0/8, or a single IP address"
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return p, usage, fmt.Errorf("invalid IP address or CIDR %q", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), "", nil
	}
	p, err = netip.ParsePrefix(s)
	if err != nil {
		return p, usage, fmt.Errorf("invalid CIDR %q", s)
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	if m := p.Masked(); m != p {
		return p, fmt.Sprintf("did you mean %q?", m), fmt.Errorf("CIDR %q has bits set past its /%d prefix", s, p.Bits())
	}
	return p, "", nil
}

// suggest returns the candidate closest to name, if one is close enough to
// be a plausible typo, or if one of the two starts with the other
// ("warning" for "warn").
func suggest(name string, candidates []string) string {
	best, bestDist := "", max(1, min(3, len(name)/3))+1
	lname := strings.ToLower(name)
	for _, c := range candidates {
		lc := strings.ToLower(c)
		d := editDistance(lname, lc)
		if min(len(lname), len(lc)) >= 3 && (strings.HasPrefix(lname, lc) || strings.HasPrefix(lc, lname)) {
			d = min(d, 1)
		}
		if d < bestDist && c != name {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b)) // not a typo; spare the quadratic work
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
