//go:build unix && !linux && !aix

package gateway

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// peekNonBlocking is recvfrom(2) with MSG_PEEK|MSG_DONTWAIT into buf; it
// returns the call's errno, 0 when a byte or the end of the stream is there.
// (Linux has a version that allocates nothing; some systems have no raw
// recvfrom system call number.)
func peekNonBlocking(fd uintptr, buf *[1]byte) syscall.Errno {
	_, _, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	if err != nil {
		return syscall.EIO
	}
	return 0
}
