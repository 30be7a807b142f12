package ufop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/qufop/qufop/errs"
)

// fuzzMaxOutput is small so that the fuzzer reaches it.
const fuzzMaxOutput = 1 << 10

// fuzzMaxSent caps what the fake instance sends in the endless mode: a
// client still reading by then has no limit.
const fuzzMaxSent = 64 << 20

// FuzzResponse has an instance on loopback answer Caller.Call with
// arbitrary bytes: once, or (endless) again and again until the caller
// hangs up, which makes any part of an answer unbounded (a header line, the
// headers, 1xx answers, a body, chunks). Beyond "no panic" it checks that
// the call ends by the caller's own limits, never by its deadline or by the
// instance running out of bytes to send; that an answer is at most
// MaxOutput bytes; that errors are 599 with a one-line message of at most
// MaxErrorMessage bytes; and that a finite answer is read as net/http reads
// it: the same body for a 2xx, the same status for another.
func FuzzResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\nbody until close",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + strings.Repeat("x", 2000),
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"HTTP/1.0 200 OK\r\n\r\nold",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 34\r\n\r\n{\"code\":400,\"error\":\"bad input\\n\"}",
		"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\r\n{\"error\":{\"nested\":[1,2]}}",
		"HTTP/1.1 502 Bad Gateway\r\n\r\n\x00\x01\xff\xfe line\r\nbreak",
		"HTTP/1.1 599 x\r\nContent-Length: 3\r\n\r\n\xe2\x80",
		"HTTP/1.1 200 OK\r\nX: a",
		"HTTP/1.1 200 OK\r\nX: a\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n",
		"HTTP/1.1 999 Weird\r\n\r\n",
		"HTTP/1.1 abc\r\n\r\n",
		"HTTP/2 200\r\n\r\n",
		"garbage",
		"",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	inst := startFuzzInstance(f)
	f.Fuzz(func(t *testing.T, answer []byte, endless bool) {
		sent := inst.serve(answer, endless)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c := Caller{MaxOutput: fuzzMaxOutput}
		out, err := c.Call(ctx, inst.addr, ProtocolHandler, "fuzz/x", Input{Data: []byte("in"), MIME: "text/plain"})
		// The instance waits for the caller to hang up: a pooled
		// connection is closed here.
		defaultTransport.CloseIdleConnections()
		n := <-sent
		if n >= fuzzMaxSent {
			t.Fatalf("the caller read on past %d bytes (err %v)", n, short(err))
		}
		if err == nil {
			if len(out.Data) > fuzzMaxOutput {
				t.Fatalf("an answer of %d bytes, over MaxOutput %d", len(out.Data), fuzzMaxOutput)
			}
			if strings.TrimSpace(out.MIME) != out.MIME || out.MIME == "" {
				t.Fatalf("MIME %q", out.MIME)
			}
		} else {
			if st := errs.Status(err); st != errs.StatusProcessingFailed {
				t.Fatalf("status %d (a deadline?): %v", st, short(err))
			}
			msg := errs.Public(err)
			if !utf8.ValidString(msg) || strings.IndexFunc(msg, unicode.IsControl) >= 0 {
				t.Fatalf("public message not one clean line: %q", msg)
			}
			var ue *UOPError
			if errors.As(err, &ue) && len(ue.Message) > MaxErrorMessage {
				t.Fatalf("instance message of %d bytes, over %d", len(ue.Message), MaxErrorMessage)
			}
		}
		if endless {
			return
		}
		// A finite answer: as net/http reads it.
		body, status, rerr := referenceRead(answer)
		switch {
		case rerr != nil:
			if err == nil {
				t.Fatalf("accepted an answer net/http refuses (%v): %q", rerr, out.Data)
			}
		case status < 200 || status > 299:
			var ue *UOPError
			if !errors.As(err, &ue) || ue.Status != status {
				t.Fatalf("status %d answer: got %v", status, short(err))
			}
		default:
			if err != nil {
				t.Fatalf("refused a %d answer of %d bytes net/http reads: %v", status, len(body), short(err))
			}
			if !bytes.Equal(out.Data, body) {
				t.Fatalf("body %q, net/http reads %q", out.Data, body)
			}
		}
	})
}

// short is err's text cut to a readable length (a 64 MB header line
// would otherwise be the failure message).
func short(err error) string {
	if err == nil {
		return "<nil>"
	}
	s := err.Error()
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// referenceRead reads answer as the reply to a POST with net/http's
// parser: the final answer after 1xx ones (101 refused), its body when
// 2xx and at most fuzzMaxOutput bytes.
func referenceRead(answer []byte) ([]byte, int, error) {
	br := bufio.NewReader(bytes.NewReader(answer))
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodPost})
		if err != nil {
			return nil, 0, err
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return nil, 0, errors.New("101")
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			continue
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return nil, resp.StatusCode, nil
		}
		if resp.ContentLength > fuzzMaxOutput {
			return nil, 0, errors.New("too large")
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, fuzzMaxOutput+1))
		if err != nil {
			return nil, 0, err
		}
		if len(b) > fuzzMaxOutput {
			return nil, 0, errors.New("too large")
		}
		return b, resp.StatusCode, nil
	}
}

// fuzzInstance answers each connection with the next answer given to
// serve; a connection nobody asked for is closed at once.
type fuzzInstance struct {
	addr    string
	answers chan fuzzAnswer
}

type fuzzAnswer struct {
	data    []byte
	endless bool
	sent    chan int64 // bytes written, once the connection is done
}

func startFuzzInstance(f *testing.F) *fuzzInstance {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })
	inst := &fuzzInstance{addr: ln.Addr().String(), answers: make(chan fuzzAnswer, 1)}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case a := <-inst.answers:
				go a.answer(conn)
			default:
				conn.Close()
			}
		}
	}()
	return inst
}

// serve makes answer the next connection's; the channel gets the count of
// bytes written once that connection is done.
func (inst *fuzzInstance) serve(answer []byte, endless bool) <-chan int64 {
	a := fuzzAnswer{data: answer, endless: endless, sent: make(chan int64, 1)}
	inst.answers <- a
	return a.sent
}

func (a fuzzAnswer) answer(conn net.Conn) {
	var n atomic.Int64
	defer func() { a.sent <- n.Load() }()
	defer conn.Close()
	// Read the whole request first: closing with unread bytes would reset
	// the connection and lose the answer.
	br := bufio.NewReader(conn)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	io.Copy(io.Discard, req.Body)
	if a.endless && len(a.data) > 0 {
		// Large writes, so that a loop is not a write per byte.
		chunk := bytes.Repeat(a.data, max(1, (32<<10)/len(a.data)))
		for n.Load() < fuzzMaxSent {
			m, err := conn.Write(chunk)
			n.Add(int64(m))
			if err != nil {
				break
			}
		}
	} else {
		m, _ := conn.Write(a.data)
		n.Add(int64(m))
	}
	// Half-close, then wait for the caller to hang up (it may keep the
	// connection until the fuzz function closes the idle ones).
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	io.Copy(io.Discard, br)
}
