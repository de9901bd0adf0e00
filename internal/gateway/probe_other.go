//go:build !unix || aix

package gateway

import "net"

// idleProbe is a no-op where MSG_PEEK is not available: a closed idle
// connection is then found by the retry in forward.
type idleProbe struct{}

func newIdleProbe(net.Conn) *idleProbe { return nil }

func (p *idleProbe) idleClean() bool { return true }
