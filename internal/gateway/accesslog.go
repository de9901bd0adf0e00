package gateway

import (
	"crypto/sha256"
	"io"
	"net/netip"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// AccessLog writes one line per request, in the process log's own format
// (the lines slog's JSON or text handler would write for the same record),
// encoded by hand: through slog the line cost a third of a forward-auth
// answer. The line names the normalised path but never the query string or
// any header value: queries and headers are where clients put secrets.
type AccessLog struct {
	// W receives the lines, one Write each; a logbuf.Writer batches them.
	W io.Writer
	// Text selects slog's text format (key=value); JSON otherwise.
	Text bool
	// ClientKey, when set, keys the pseudonym that stands for the client's
	// address in each line ("c_" and 16 hex digits): one address, one
	// pseudonym, so that lines still tell one client from another, while
	// the log holds no address. Unset, the address is written.
	ClientKey []byte
}

// pseudonym appends the pseudonym of addr: the first 8 bytes of
// SHA-256(key ‖ address), in hex. The key is secret and of fixed length,
// so without it a pseudonym cannot be tied to an address by trying them.
func (l *AccessLog) pseudonym(b []byte, addr netip.Addr) []byte {
	return appendPseudonym(b, l.ClientKey, addr)
}

// ClientPseudonym is the pseudonym the access log writes for addr under
// key, for other records that name a client (an audited lockout), so that
// they can be matched with the access log without holding the address.
func ClientPseudonym(key []byte, addr netip.Addr) string {
	return string(appendPseudonym(nil, key, addr))
}

// ClientPseudonymOf is ClientPseudonym of a key that is not an address
// alone (a rate limit's key, which names an address or an account).
func ClientPseudonymOf(key []byte, s string) string {
	sum := sha256.Sum256(append(append(make([]byte, 0, len(key)+1+len(s)), key...), s...))
	return string(appendHex([]byte("c_"), sum[:8]))
}

func appendPseudonym(b, key []byte, addr netip.Addr) []byte {
	var in [64 + 16]byte
	n := copy(in[:], key)
	a16 := addr.As16()
	n += copy(in[n:], a16[:])
	sum := sha256.Sum256(in[:n])
	return appendHex(append(b, "c_"...), sum[:8])
}

// accessEntry is what one line says.
type accessEntry struct {
	time      time.Time
	requestID string
	method    string
	path      string
	status    int
	bytes     int64
	duration  time.Duration
	client    netip.Addr
	route     string
	proto     string
	// outcome is the decision ("allowed", or why not), why a bad key was
	// bad, subject the principal (pseudonymous: user:<id>, service:<name>)
	// and keyID the key's display ID: each left out when empty.
	outcome, why, subject, keyID string
	// traceID is the request's trace when it was sampled (zero otherwise),
	// to go from a line to the trace and back.
	traceID [16]byte
}

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func (l *AccessLog) write(e *accessEntry) {
	bp := lineBufs.Get().(*[]byte)
	b := (*bp)[:0]
	if l.Text {
		b = e.appendText(l, b)
	} else {
		b = e.appendJSON(l, b)
	}
	_, _ = l.W.Write(b) // a log that cannot be written must not fail the request
	if cap(b) <= 4<<10 {
		*bp = b
		lineBufs.Put(bp)
	}
}

func (l *AccessLog) appendClient(b []byte, addr netip.Addr) []byte {
	if len(l.ClientKey) > 0 {
		return l.pseudonym(b, addr)
	}
	return addr.AppendTo(b)
}

func (e *accessEntry) appendJSON(l *AccessLog, b []byte) []byte {
	b = append(b, `{"time":"`...)
	b = e.time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"request","request_id":`...)
	b = appendJSONString(b, e.requestID)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, e.method)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, e.path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.bytes, 10)
	b = append(b, `,"duration":`...)
	b = appendJSONString(b, e.duration.String()) // as every duration keyway logs: "1.2ms"
	b = append(b, `,"client":`...)
	if e.client.IsValid() {
		b = append(b, '"')
		b = l.appendClient(b, e.client)
		b = append(b, '"')
	} else {
		b = appendJSONString(b, e.client.String())
	}
	b = append(b, `,"route":`...)
	b = appendJSONString(b, e.route)
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, e.proto)
	for _, f := range [...]struct{ k, v string }{{`,"outcome":`, e.outcome}, {`,"why":`, e.why}, {`,"subject":`, e.subject}, {`,"key_id":`, e.keyID}} {
		if f.v != "" {
			b = append(b, f.k...)
			b = appendJSONString(b, f.v)
		}
	}
	if e.traceID != ([16]byte{}) {
		b = append(b, `,"trace_id":"`...)
		b = appendHex(b, e.traceID[:])
		b = append(b, '"')
	}
	return append(b, "}\n"...)
}

func (e *accessEntry) appendText(l *AccessLog, b []byte) []byte {
	b = append(b, "time="...)
	// slog's text handler: RFC 3339 with milliseconds.
	b = e.time.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, " level=INFO msg=request request_id="...)
	b = appendTextValue(b, e.requestID)
	b = append(b, " method="...)
	b = appendTextValue(b, e.method)
	b = append(b, " path="...)
	b = appendTextValue(b, e.path)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, " bytes="...)
	b = strconv.AppendInt(b, e.bytes, 10)
	b = append(b, " duration="...)
	b = appendTextValue(b, e.duration.String())
	b = append(b, " client="...)
	if e.client.IsValid() {
		b = l.appendClient(b, e.client)
	} else {
		b = appendTextValue(b, e.client.String())
	}
	b = append(b, " route="...)
	b = appendTextValue(b, e.route)
	b = append(b, " proto="...)
	b = appendTextValue(b, e.proto)
	for _, f := range [...]struct{ k, v string }{{" outcome=", e.outcome}, {" why=", e.why}, {" subject=", e.subject}, {" key_id=", e.keyID}} {
		if f.v != "" {
			b = append(b, f.k...)
			b = appendTextValue(b, f.v)
		}
	}
	if e.traceID != ([16]byte{}) {
		b = append(b, " trace_id="...)
		b = appendHex(b, e.traceID[:])
	}
	return append(b, '\n')
}

func appendHex(b, src []byte) []byte {
	for _, c := range src {
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, so that a
// path no one expected can never break the line or forge another.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 end lines in JavaScript: escape them as
		// encoding/json does.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendTextValue appends s as slog's text handler does: bare when it is
// a simple token, quoted (Go syntax) when it is empty or holds a space, a
// quote, an equals sign, a control character or anything not printable.
func appendTextValue(b []byte, s string) []byte {
	if s == "" {
		return append(b, `""`...)
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == '"' || c == '=' || c == 0x7f {
				return strconv.AppendQuote(b, s)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return strconv.AppendQuote(b, s)
		}
		i += size
	}
	return append(b, s...)
}
