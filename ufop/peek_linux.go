package ufop

import (
	"net"
	"syscall"
)

// peeker tells whether the instance closed a pooled connection while it
// idled (its FIN or reset arrived), with one non-blocking recv that leaves
// the socket as it was: no goroutine reading each idle connection, and no
// deadline changes.
type peeker struct {
	raw syscall.RawConn // nil when conn has no file descriptor
	fn  func(fd uintptr) bool
	ok  bool // the answer of the last fn
	buf [1]byte
}

func newPeeker(c net.Conn) *peeker {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return &peeker{}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return &peeker{}
	}
	p := &peeker{raw: raw}
	p.fn = p.recv // made once: a closure per call would allocate
	return p
}

func (p *peeker) recv(fd uintptr) bool {
	_, _, err := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	// Nothing to read is an open connection. Zero bytes (EOF) is the
	// instance's close, a byte is an answer nobody asked for (out of
	// step), an error its reset: none can carry a request.
	p.ok = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINTR
	return true // done: never wait for the socket to be readable
}

// alive reports whether the connection can carry a request.
func (p *peeker) alive() bool {
	if p == nil || p.raw == nil {
		return true
	}
	if err := p.raw.Read(p.fn); err != nil {
		return false // closed on our side
	}
	return p.ok
}
