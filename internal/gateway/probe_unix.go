//go:build unix

package gateway

import (
	"crypto/tls"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// idleProbe looks, without blocking and without reading, at an idle
// upstream connection before it is reused: a connection the upstream has
// closed, or one on which it sent bytes nobody asked for (a second answer
// to one request, which would otherwise be taken for the next request's),
// is not reused. It is made once per connection.
type idleProbe struct {
	raw   syscall.RawConn
	fn    func(fd uintptr) bool
	clean bool
}

func newIdleProbe(nc net.Conn) *idleProbe {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	p := &idleProbe{raw: raw}
	p.fn = func(fd uintptr) bool {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		// Nothing waiting on an open connection is the only clean state:
		// n == 0 is the upstream's close, n > 0 unsolicited bytes.
		p.clean = n < 0 && (err == unix.EAGAIN || err == unix.EWOULDBLOCK)
		return true
	}
	return p
}

// idleClean reports whether the connection is open with nothing unread.
func (p *idleProbe) idleClean() bool {
	if p == nil {
		return true
	}
	p.clean = false
	if err := p.raw.Read(p.fn); err != nil {
		return false
	}
	return p.clean
}
