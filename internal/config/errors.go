package config

import (
	"fmt"
	"sort"
	"strings"
)

// maxErrors bounds how many problems one Load reports, so that a garbage
// file cannot produce an unbounded error list.
const maxErrors = 100

// Error is one problem in a configuration, located at a line of the file
// when it came from one.
type Error struct {
	// File is the path given to Load; empty for built-in configs and for
	// settings made by environment variables.
	File string
	// Line is 1-based; 0 when unknown.
	Line int
	// Msg says what is wrong, starting with the setting's path
	// ("routes[2].upstream: ...") where there is one.
	Msg string
	// Hint suggests a fix; it may be empty.
	Hint string

	path string // field path the problem is about, for de-duplication
}

// Path is the setting e is about ("routes[2].upstream"), "" for the file.
func (e *Error) Path() string { return e.path }

// Error formats e as "file:line: msg (hint)", leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		fmt.Fprintf(&b, " (%s)", e.Hint)
	}
	return b.String()
}

// Errors is every problem found in a configuration. Load and Validate
// return it as their error, sorted by line.
type Errors []*Error

// Error prints one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual problems, for errors.As.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// sorted orders es by line, problems without a line last, and truncates
// it to maxErrors.
func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool { return lineLess(es[i].Line, es[j].Line) })
	if len(es) > maxErrors {
		es = append(es[:maxErrors:maxErrors], &Error{File: es[0].File, Msg: "too many errors; stopping here"})
	}
	return es
}

// Warning is a security smell found by Lint: the configuration is valid
// but probably not what production wants.
type Warning struct {
	// File and Line locate the setting, as in Error.
	File string
	Line int
	// Code names the kind of smell, stable for tools ("api-key-route-no-scopes").
	Code string
	// Path is the setting the warning is about ("routes[2]").
	Path string
	// Msg says what is risky and what to do instead.
	Msg string
}

// String formats w as "file:line: warning: msg".
func (w Warning) String() string {
	e := Error{File: w.File, Line: w.Line, Msg: "warning: " + w.Msg}
	return e.Error()
}

// lineLess orders known lines before unknown (zero) ones.
func lineLess(a, b int) bool {
	if a == 0 || b == 0 {
		return a != 0 && b == 0
	}
	return a < b
}

// source records where the settings of a Config came from.
type source struct {
	file  string            // path given to Load; empty for built-in configs
	lines map[string]int    // field path ("routes[2].upstream") → line in file
	env   map[string]string // field path → environment variable that set it
}

// has reports whether the file wrote the setting at path.
func (s *source) has(path string) bool {
	_, ok := s.lines[path]
	return ok
}

// locate returns the file, line and label for a problem at path. A setting
// from the environment is labelled with its variable and has no file; one
// the file did not write gets the line of its nearest written ancestor,
// such as the route it belongs to.
func (s *source) locate(path string) (file string, line int, label string) {
	if name, ok := s.env[path]; ok {
		return "", 0, name
	}
	for p := path; p != ""; p = parent(p) {
		if l, ok := s.lines[p]; ok {
			return s.file, l, path
		}
	}
	return s.file, 0, path
}

// newError builds the Error for a problem at path.
func (s *source) newError(path, hint, msg string) *Error {
	file, line, label := s.locate(path)
	if label != "" {
		msg = label + ": " + msg
	}
	return &Error{File: file, Line: line, Msg: msg, Hint: hint, path: path}
}

// parent returns the path of the setting that contains path:
// "routes[2].upstream" → "routes[2]" → "routes" → "".
func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}
