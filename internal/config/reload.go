package config

import (
	"reflect"
	"strings"
)

// Reloadable are the top-level settings a running keyway takes from a
// reloaded file (SIGHUP): the routes and the upstreams (with each route's
// limits and timeouts) and the client profiles. Everything else is bound
// at start (listeners, stores, keys, sessions, passkeys, TLS mode) and
// needs a restart; certificate files (tls.mode: files) are picked up when
// they change, without a signal.
var Reloadable = []string{"routes", "upstreams", "clients"}

// NeedsRestart lists the top-level settings (by their YAML names) in which
// next differs from c, other than the Reloadable ones: what a reload
// cannot apply.
func (c *Config) NeedsRestart(next *Config) []string {
	var out []string
	a, b := reflect.ValueOf(c).Elem(), reflect.ValueOf(next).Elem()
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || contains(Reloadable, name) {
			continue
		}
		if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			out = append(out, name)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
