//go:build linux

package gateway

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peekNonBlocking is recvfrom(2) with MSG_PEEK|MSG_DONTWAIT into buf and no
// source address (unix.Recvfrom would allocate one for every probe); it
// returns the call's errno, 0 when a byte or the end of the stream is there.
func peekNonBlocking(fd uintptr, buf *[1]byte) syscall.Errno {
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), 1, //nolint:gosec // G103: buf is inside a heap object that outlives the call
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return errno
}
