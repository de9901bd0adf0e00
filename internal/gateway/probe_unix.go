//go:build unix && !aix

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
	buf   [1]byte // recvfrom's buffer, here so that a probe allocates nothing
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
		// Nothing waiting on an open connection is the only clean state;
		// a result (0: the upstream's close, 1: unsolicited bytes) or any
		// other error is not.
		errno := peekNonBlocking(fd, &p.buf)
		p.clean = errno == unix.EAGAIN || errno == unix.EWOULDBLOCK
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
