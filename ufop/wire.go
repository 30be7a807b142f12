package ufop

// wireRequest is a call to an instance prepared for the wire. The Caller's
// requests are always the same small POST: writing its head straight into a
// buffer skips http.Request, its header map and Request.Write, which a CPU
// profile of the gateway showed as a fifth of each call's allocations.

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
)

type wireRequest struct {
	host   string // host:port, the Host header and the pool's key
	target string // request-target: path and query
	// header holds name, value pairs. Names are constants of this package;
	// values are checked by validHeaderValue before they are added.
	header []string
	body   []byte
}

// heads are the buffers request heads (and small bodies) are built in.
var heads = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// inlineBody is the largest body copied behind the head, so that the whole
// request leaves in one write; larger bodies go with writev, uncopied.
const inlineBody = 16 << 10

func (w *wireRequest) add(name, value string) { w.header = append(w.header, name, value) }

// appendHead appends the request line and headers, up to the empty line.
func (w *wireRequest) appendHead(b []byte) []byte {
	b = append(b, "POST "...)
	b = append(b, w.target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, w.host...)
	b = append(b, "\r\nUser-Agent: qufop\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(w.body)), 10)
	b = append(b, "\r\n"...)
	for i := 0; i+1 < len(w.header); i += 2 {
		b = append(b, w.header[i]...)
		b = append(b, ": "...)
		b = append(b, w.header[i+1]...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

// send writes the request on pc: one write for a small body, one writev
// for a large one.
func (w *wireRequest) send(pc *persistConn) error {
	bp := heads.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 64<<10 {
			heads.Put(bp)
		}
	}()
	b := w.appendHead((*bp)[:0])
	var err error
	if len(w.body) <= inlineBody {
		b = append(b, w.body...)
		_, err = pc.Write(b)
	} else {
		bufs := net.Buffers{b, w.body}
		var n int64
		n, err = bufs.WriteTo(pc.conn)
		pc.nwrite += n
		if err != nil {
			pc.werr = err
		}
	}
	*bp = b
	return err
}

// httpRequest is w as an *http.Request, for a Caller with its own client.
func (w *wireRequest) httpRequest(ctx context.Context) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+w.host+w.target, bytes.NewReader(w.body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "qufop")
	for i := 0; i+1 < len(w.header); i += 2 {
		req.Header.Set(w.header[i], w.header[i+1])
	}
	return req, nil
}

// do runs w like RoundTrip runs a request. w can always be written again,
// but as a POST it is sent again only when nothing of it was written.
func (t *Transport) do(ctx context.Context, w *wireRequest) (*http.Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return t.exchange(ctx, w.host, nil, w.send, func() func(*persistConn) error { return w.send })
}

// validHeaderValue reports whether v may be sent as a header value as it
// is: printable ASCII, spaces and tabs (no CR or LF that would end the
// header early).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
