package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// slogLine is the line slog itself writes for e: the format the
// hand-written encoder promises to keep.
func slogLine(t *testing.T, e *accessEntry, text bool) string {
	t.Helper()
	var buf bytes.Buffer
	var h slog.Handler = slog.NewJSONHandler(&buf, nil)
	if text {
		h = slog.NewTextHandler(&buf, nil)
	}
	r := slog.NewRecord(e.time, slog.LevelInfo, "request", 0)
	r.AddAttrs(slog.String("request_id", e.requestID), slog.String("method", e.method), slog.String("path", e.path),
		// keyway's logger writes durations as strings (app.NewLogger).
		slog.Int("status", e.status), slog.Int64("bytes", e.bytes), slog.String("duration", e.duration.String()),
		slog.String("client", e.client.String()), slog.String("route", e.route), slog.String("proto", e.proto))
	for _, f := range [][2]string{{"outcome", e.outcome}, {"why", e.why}, {"subject", e.subject}, {"key_id", e.keyID}} {
		if f[1] != "" {
			r.AddAttrs(slog.String(f[0], f[1]))
		}
	}
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestAccessLogLinesAreTheLinesSlogWrites(t *testing.T) {
	at := time.Date(2026, 11, 30, 19, 12, 25, 78120442, time.UTC)
	paths := []string{
		"/v1/forecast",
		"",
		`/a"b\c`,
		"/new\nline\r\t",
		"/ctl\x00\x01\x1f\x7f",
		"/bad\xff\xfeutf8",
		"/ünïcødé/日本",
		"/js\u2028\u2029",
		"/sp ace=eq",
		"/\u00a0nbsp",
		"/fake\"}\n{\"msg\":\"forged",
	}
	for _, c := range []netip.Addr{{}, netip.MustParseAddr("::ffff:10.1.2.3"), netip.MustParseAddr("fe80::1%eth0")} {
		e := &accessEntry{time: at, client: c, path: "/"}
		if got, want := string(e.appendText(&AccessLog{}, nil)), slogLine(t, e, true); got != want {
			t.Errorf("client %v: text line differs:\n got %q\nwant %q", c, got, want)
		}
		var g, w map[string]any
		_ = json.Unmarshal(e.appendJSON(&AccessLog{}, nil), &g)
		_ = json.Unmarshal([]byte(slogLine(t, e, false)), &w)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("client %v: JSON line differs: %v, want %v", c, g, w)
		}
	}
	for i, p := range paths {
		e := &accessEntry{time: at, requestID: "27d6347eece0-34lo", method: "GET", path: p, status: 200, bytes: 12345,
			duration: 11101 * time.Nanosecond, client: netip.MustParseAddr("2001:db8::1"), route: "/key", proto: "HTTP/1.1"}
		if i%2 == 1 { // a refused key: what the operator sees and the client does not
			e.status, e.outcome, e.why, e.subject, e.keyID = 401, "bad_key", "revoked", "service:bil\"ling", "key_AbC123"
		}
		t.Run(strings.ToValidUTF8(p, "?"), func(t *testing.T) {
			got := string(e.appendJSON(&AccessLog{}, nil))
			want := slogLine(t, e, false)
			if strings.Count(got, "\n") != 1 || !strings.HasSuffix(got, "\n") {
				t.Fatalf("JSON line is not one line: %q", got)
			}
			var g, w map[string]any
			if err := json.Unmarshal([]byte(got), &g); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, got)
			}
			if err := json.Unmarshal([]byte(want), &w); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("JSON line differs from slog's:\n got %s\nwant %s", got, want)
			}
			if got, want := string(e.appendText(&AccessLog{}, nil)), slogLine(t, e, true); got != want {
				t.Fatalf("text line differs from slog's:\n got %q\nwant %q", got, want)
			}
		})
	}
}

func TestAccessLogWritesOneLinePerWrite(t *testing.T) {
	var buf bytes.Buffer
	l := &AccessLog{W: &buf}
	e := &accessEntry{time: time.Now(), requestID: "x", method: "GET", path: "/a", status: 404, client: netip.MustParseAddr("127.0.0.1"), proto: "HTTP/2.0"}
	l.write(e)
	l.write(e)
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("%d lines, want 2: %q", n, buf.String())
	}
}

// TestAccessLogPseudonymisesClients: with a key, a line names the client
// by a keyed pseudonym, one per address (IPv4 and its IPv4-in-IPv6 form
// alike), never by the address.
func TestAccessLogPseudonymisesClients(t *testing.T) {
	line := func(key []byte, addr string, text bool) string {
		var buf bytes.Buffer
		l := &AccessLog{W: &buf, ClientKey: key, Text: text}
		l.write(&accessEntry{time: time.Now(), requestID: "x", method: "GET", path: "/a", status: 200, client: netip.MustParseAddr(addr), proto: "HTTP/2.0"})
		return buf.String()
	}
	client := func(s string) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		return m["client"].(string)
	}
	key, other := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	a := client(line(key, "203.0.113.77", false))
	if !strings.HasPrefix(a, "c_") || len(a) != 18 || strings.Contains(line(key, "203.0.113.77", true), "203.0.113") {
		t.Fatalf("pseudonym %q", a)
	}
	if client(line(key, "203.0.113.77", false)) != a || client(line(key, "::ffff:203.0.113.77", false)) != a {
		t.Fatal("one address, two pseudonyms")
	}
	if client(line(key, "203.0.113.78", false)) == a || client(line(other, "203.0.113.77", false)) == a {
		t.Fatal("another address or another key, the same pseudonym")
	}
	if !strings.Contains(line(key, "2001:db8::1", true), " client=c_") {
		t.Fatal("the text line has no pseudonym")
	}
	if client(line(nil, "203.0.113.77", false)) != "203.0.113.77" {
		t.Fatal("without a key, the address is written")
	}
}
