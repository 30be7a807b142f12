package ufop

// A step is delivered once (issue 10): what an instance received, counted on
// a real listener, when it closes a kept-alive connection at various points.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/errs"
)

// What a rawInstance does with a request it read in full.
const (
	actAnswer      = "answer"       // 200 "ok", the connection kept alive
	actAnswerClose = "answer-close" // 200 "ok" without saying close, then close: the conn idles closed
	actAnswerReset = "answer-reset" // the same, closed with a reset
	actHangUp      = "hang-up"      // close without answering (a crash)
)

// rawInstance is an instance on a real listener on 127.0.0.1 serving
// kept-alive connections one request after the other. act decides, from
// the request's body, what it does once it has read the request in full.
type rawInstance struct {
	addr string
	act  func(body string) string

	mu      sync.Mutex
	bodies  []string // every request body that arrived in full
	clients []string // the client address of each accepted connection
	// eof gets the client address of each connection on which the client
	// closed (EOF while waiting for a request).
	eof chan string
}

func newRawInstance(t *testing.T, act func(body string) string) *rawInstance {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ri := &rawInstance{addr: ln.Addr().String(), act: act, eof: make(chan string, 256)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open[conn] = true
			mu.Unlock()
			ri.mu.Lock()
			ri.clients = append(ri.clients, conn.RemoteAddr().String())
			ri.mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(open, conn)
					mu.Unlock()
					conn.Close()
				}()
				ri.serve(conn)
			})
		}
	})
	return ri
}

func (ri *rawInstance) serve(conn net.Conn) {
	br := bufio.NewReader(conn)
	for {
		if _, err := br.Peek(1); err != nil {
			if err == io.EOF {
				ri.eof <- conn.RemoteAddr().String()
			}
			return
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		ri.mu.Lock()
		ri.bodies = append(ri.bodies, string(b))
		ri.mu.Unlock()
		act := ri.act(string(b))
		if act == actHangUp {
			return
		}
		if _, err := io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
		switch act {
		case actAnswerReset:
			conn.(*net.TCPConn).SetLinger(0)
			return
		case actAnswerClose:
			return
		}
	}
}

func (ri *rawInstance) received() []string {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	return append([]string(nil), ri.bodies...)
}

func (ri *rawInstance) conns() []string {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	return append([]string(nil), ri.clients...)
}

// waitEOF waits until the client closed n connections to ri, and returns
// their client addresses.
func (ri *rawInstance) waitEOF(t *testing.T, n int) []string {
	t.Helper()
	var got []string
	deadline := time.After(20 * time.Second) // a safety net only
	for len(got) < n {
		select {
		case a := <-ri.eof:
			got = append(got, a)
		case <-deadline:
			t.Fatalf("%s: the client closed %d connections, want %d", ri.addr, len(got), n)
		}
	}
	return got
}

// noEOF asserts that no connection to ri was closed by the client so far.
func (ri *rawInstance) noEOF(t *testing.T) {
	t.Helper()
	select {
	case a := <-ri.eof:
		t.Errorf("%s: the client closed its connection from %s", ri.addr, a)
	default:
	}
}

// tcpState is the state of the TCP socket from local to remote, from
// /proc/net/tcp (hex, as the kernel writes it: "08" is CLOSE_WAIT), "" when
// there is none.
func tcpState(t *testing.T, local, remote string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	l, r := procAddr(t, local), procAddr(t, remote)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == l && f[2] == r {
			return f[3]
		}
	}
	return ""
}

// procAddr is addr as /proc/net/tcp prints it: little-endian IPv4, port.
func procAddr(t *testing.T, addr string) string {
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	ip := net.ParseIP(host).To4()
	require.NotNil(t, ip, addr)
	p, _ := strconv.Atoi(port)
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], p)
}

// waitPeerClosed waits until the client socket from local to the instance
// has received the instance's FIN (CLOSE_WAIT) or reset (gone from the
// table): the idle connection is closed on the instance's side before the
// next call.
func waitPeerClosed(t *testing.T, local, instance string) {
	t.Helper()
	require.Eventually(t, func() bool {
		s := tcpState(t, local, instance)
		return s == "08" || s == "" || s == "07" // CLOSE_WAIT, gone, CLOSE
	}, 20*time.Second, time.Millisecond, "the instance's close of %s never arrived", local)
}

// waitIdleClosed waits until the instance's close of the newest pooled
// connection to key has arrived: a POST written before it would fail (it
// is not sent twice), one written after it goes on a new connection.
func waitIdleClosed(t *testing.T, tr *Transport, key string) {
	t.Helper()
	tr.mu.Lock()
	var local string
	if l := tr.idle[key]; len(l) > 0 {
		local = l[len(l)-1].conn.LocalAddr().String()
	}
	tr.mu.Unlock()
	require.NotEmpty(t, local, "no pooled connection to %s", key)
	waitPeerClosed(t, local, key)
}

// callers are the two ways requests reach instances: the Caller's wire
// requests (the dispatcher's path) and RoundTrip with an *http.Request
// whose body can be had again (GetBody set).
var callers = []struct {
	name string
	call func(t *testing.T, tr *Transport, addr, body string) error
}{
	{"wire request", func(t *testing.T, tr *Transport, addr, body string) error {
		w, err := newRequest(addr, ProtocolHandler, "ufop-demo/md5", Input{Data: []byte(body), MIME: "text/plain"})
		require.NoError(t, err)
		resp, err := tr.do(context.Background(), w)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && string(b) != "ok" {
			err = fmt.Errorf("answer %q", b)
		}
		return err
	}},
	{"http.Request POST", func(t *testing.T, tr *Transport, addr, body string) error {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/handler?cmd=x", bytes.NewReader([]byte(body)))
		require.NoError(t, err)
		require.NotNil(t, req.GetBody)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && string(b) != "ok" {
			err = fmt.Errorf("answer %q", b)
		}
		return err
	}},
}

// An instance that reads a whole step on a kept-alive connection and dies
// without answering must not get the step a second time on a new
// connection: one request that crashes an instance would crash another.
func TestStepDeliveredOnceWhenInstanceHangsUp(t *testing.T) {
	for _, c := range callers {
		t.Run(c.name, func(t *testing.T) {
			ri := newRawInstance(t, func(body string) string {
				if body == "crash" {
					return actHangUp
				}
				return actAnswer
			})
			tr := &Transport{}
			t.Cleanup(tr.CloseIdleConnections)
			require.NoError(t, c.call(t, tr, ri.addr, "warm"))
			require.Equal(t, 1, tr.idleCount(ri.addr))

			err := c.call(t, tr, ri.addr, "crash")
			require.Error(t, err)
			assert.True(t, died(err), "%v", err)
			assert.Equal(t, []string{"warm", "crash"}, ri.received(), "the step arrived more than once")
			assert.Len(t, ri.conns(), 1)
			assert.Zero(t, tr.idleCount(ri.addr))
		})
	}
}

// The same through Caller.Call: the step fails with the 599 of a dead
// instance, and the instance saw it once.
func TestCallDeliveredOnceWhenInstanceHangsUp(t *testing.T) {
	ri := newRawInstance(t, func(body string) string {
		if body == "crash" {
			return actHangUp
		}
		return actAnswer
	})
	var c Caller
	out, err := c.Call(context.Background(), ri.addr, ProtocolHandler, "ufop-demo/md5", Input{Data: []byte("warm")})
	require.NoError(t, err)
	require.Equal(t, "ok", string(out.Data))
	_, err = c.Call(context.Background(), ri.addr, ProtocolHandler, "ufop-demo/md5", Input{Data: []byte("crash")})
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrInstanceDied)
	assert.Equal(t, errs.StatusProcessingFailed, errs.Status(err))
	assert.Equal(t, "ufop-demo: instance died mid-request", errs.Public(err))
	assert.Equal(t, []string{"warm", "crash"}, ri.received())
	assert.Len(t, ri.conns(), 1)
}

// A kept-alive connection the instance closed while it was idle (before
// anything of the next request was written) is not a failed step: the
// request goes once, on a new connection.
func TestStaleIdleConnIsNotAFailure(t *testing.T) {
	for _, how := range []string{actAnswerClose, actAnswerReset} {
		for _, c := range callers {
			t.Run(how+"/"+c.name, func(t *testing.T) {
				ri := newRawInstance(t, func(string) string { return how })
				tr := &Transport{}
				t.Cleanup(tr.CloseIdleConnections)
				for i := range 3 {
					body := "step" + strconv.Itoa(i)
					require.NoError(t, c.call(t, tr, ri.addr, body), i)
					// Pooled: the answer did not say close.
					require.Equal(t, 1, tr.idleCount(ri.addr))
					conns := ri.conns()
					waitPeerClosed(t, conns[len(conns)-1], ri.addr)
				}
				assert.Equal(t, []string{"step0", "step1", "step2"}, ri.received())
				assert.Len(t, ri.conns(), 3)
			})
		}
	}
}

// Without a body (a GET) the same holds.
func TestStaleIdleConnGet(t *testing.T) {
	ri := newRawInstance(t, func(string) string { return actAnswerClose })
	tr, c := newTestTransport(t)
	for range 2 {
		_, body := get(t, c, "http://"+ri.addr+"/")
		assert.Equal(t, "ok", body)
		conns := ri.conns()
		waitPeerClosed(t, conns[len(conns)-1], ri.addr)
	}
	assert.Len(t, ri.conns(), 2)
	assert.Equal(t, 1, tr.idleCount(ri.addr))
}

// idleTotal is the number of pooled connections and of pool entries.
func (t *Transport) idleTotal() (conns, entries int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range t.idle {
		conns += len(l)
	}
	return conns, len(t.idle)
}

// Idle connections to instances that are gone are closed (the instance
// sees EOF: no socket left in CLOSE_WAIT on its side or ours) and their
// pool entries dropped; those to the live instance are kept.
func TestForgetClosesIdleConnsOfGoneInstances(t *testing.T) {
	const n, perInstance = 3, 3
	tr := &Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	var ris []*rawInstance
	for range n {
		// perInstance calls at once, each on its own connection: the
		// instance holds them until all are in flight.
		var inFlight atomic.Int64
		hold := make(chan struct{})
		ri := newRawInstance(t, func(string) string {
			if inFlight.Add(1) == perInstance {
				close(hold)
			}
			<-hold
			return actAnswer
		})
		ris = append(ris, ri)
		var wg sync.WaitGroup
		for i := range perInstance {
			wg.Go(func() {
				if err := callers[0].call(t, tr, ri.addr, "p"+strconv.Itoa(i)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		require.Equal(t, perInstance, tr.idleCount(ri.addr))
	}
	conns, entries := tr.idleTotal()
	require.Equal(t, n*perInstance, conns)
	require.Equal(t, n, entries)

	tr.Forget(ris[1].addr, ris[2].addr, "127.0.0.1:1" /* never called */)

	for _, ri := range ris[1:] {
		closed := ri.waitEOF(t, perInstance)
		assert.ElementsMatch(t, ri.conns(), closed)
		assert.Zero(t, tr.idleCount(ri.addr))
	}
	ris[0].noEOF(t)
	conns, entries = tr.idleTotal()
	assert.Equal(t, perInstance, conns)
	assert.Equal(t, 1, entries, "pool entries of the gone instances are dropped")

	// The live instance is still served on its pooled connections.
	require.NoError(t, callers[0].call(t, tr, ris[0].addr, "again"))
	assert.Len(t, ris[0].conns(), perInstance)
}

// The package's Forget acts on the transport every Caller without a
// client of its own uses.
func TestForgetInstancesDefaultTransport(t *testing.T) {
	ri := newRawInstance(t, func(string) string { return actAnswer })
	var c Caller
	_, err := c.Call(context.Background(), ri.addr, ProtocolHandler, "ufop-demo/md5", Input{Data: []byte("x")})
	require.NoError(t, err)
	require.Equal(t, 1, defaultTransport.idleCount(ri.addr))
	ForgetInstances([]string{ri.addr})
	ri.waitEOF(t, 1)
	assert.Zero(t, defaultTransport.idleCount(ri.addr))
	defaultTransport.mu.Lock()
	_, ok := defaultTransport.idle[ri.addr]
	defaultTransport.mu.Unlock()
	assert.False(t, ok, "the pool entry is dropped")
}

// Idle connections past the idle timeout are closed without waiting for
// the next call to their instance (which may never come: it was scaled
// away), and their pool entries dropped.
func TestIdleConnsExpireWithoutCalls(t *testing.T) {
	ris := []*rawInstance{
		newRawInstance(t, func(string) string { return actAnswer }),
		newRawInstance(t, func(string) string { return actAnswer }),
	}
	tr := &Transport{IdleTimeout: 50 * time.Millisecond}
	t.Cleanup(tr.CloseIdleConnections)
	for _, ri := range ris {
		require.NoError(t, callers[0].call(t, tr, ri.addr, "x"))
	}
	for _, ri := range ris {
		ri.waitEOF(t, 1)
	}
	require.Eventually(t, func() bool {
		conns, entries := tr.idleTotal()
		return conns == 0 && entries == 0
	}, 20*time.Second, time.Millisecond)

	// The transport still works, and expires again.
	require.NoError(t, callers[0].call(t, tr, ris[0].addr, "y"))
	ris[0].waitEOF(t, 1)
}
