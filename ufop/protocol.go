package ufop

// The client side of the UFOP program contract: how the gateway calls one
// instance over the v2 handler protocol (POST /handler?cmd=&url=) or the v1
// uop protocol (POST /uop with a JSON body). See the reference, §2.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/qufop/qufop/errs"
)

// Input is what an instance is asked to process.
type Input struct {
	// URL is a short-lived signed URL of the input on the gateway. When it
	// is empty the input is sent as the request body (handler protocol only).
	URL string
	// Data is the input, used when URL is "".
	Data []byte
	// MIME is the content type of the input.
	MIME string
	// Size is the input's size in bytes (len(Data) when URL is "").
	Size int64
	// Bucket is the bucket of the source object.
	Bucket string
	// Key is the full key of the source object; the /uop body carries only
	// its last path segment, as Qiniu does.
	Key string
	// ReqID is sent as X-Reqid.
	ReqID string
}

// Output is an instance's answer.
type Output struct {
	Data []byte
	// MIME is the response's Content-Type, or sniffed from Data if absent.
	MIME string
}

// Caller calls UFOP instances. The zero value is usable.
type Caller struct {
	// HTTP is the client used; nil means a client without proxy and without
	// redirects. Deadlines come from the context given to Call.
	HTTP *http.Client
	// MaxOutput caps the body of an answer; 0 means DefaultMaxOutput.
	MaxOutput int64
}

// Limits of a call.
const (
	// DefaultMaxOutput is the default cap on an instance's answer.
	DefaultMaxOutput = 256 << 20
	// MaxErrorMessage caps the part of an instance's error body that is
	// shown to users.
	MaxErrorMessage = 512
	// maxErrorBody is how much of an error body is read to find the message.
	maxErrorBody = 64 << 10
)

// Headers sent to instances on both protocols (reference §2.3). Values are
// percent-encoded when they hold spaces, '%' or bytes outside printable
// ASCII (decode with url.PathUnescape); plain keys are sent as they are.
const (
	HeaderBucket   = "X-Qiniu-Bucket"
	HeaderKey      = "X-Qiniu-Key"
	HeaderMimetype = "X-Qiniu-Mimetype"
	HeaderFsize    = "X-Qiniu-Fsize"
	HeaderReqID    = "X-Reqid"
)

// ErrInstanceDied is in the chain of the errors of calls whose instance
// refused the connection, reset it, or closed it before the whole answer was
// read: the caller should report the instance as unhealthy.
var ErrInstanceDied = errors.New("ufop instance died")

// UOPError is the cause of the error returned for a non-2xx answer.
type UOPError struct {
	Status  int    // the instance's HTTP status
	Message string // the instance's message, trimmed and capped
}

func (e *UOPError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("status %d", e.Status)
	}
	return fmt.Sprintf("%s (status %d)", e.Message, e.Status)
}

// UOPRequest is the JSON body of POST /uop.
type UOPRequest struct {
	Cmd string    `json:"cmd"`
	Src UOPSource `json:"src"`
}

// UOPSource describes the input in a UOPRequest.
type UOPSource struct {
	URL      string `json:"url"`
	MIMEType string `json:"mimetype"`
	Fsize    int64  `json:"fsize"`
	Bucket   string `json:"bucket"`
	Key      string `json:"key"`
}

// defaultTransport serves every Caller without its own client. Instances
// are plain-HTTP peers on the cluster network: no proxy, no redirects
// (RoundTrip never follows them), and a transport lighter than net/http's
// (see transport.go), called directly to skip http.Client's per-request
// work on this hot path.
var defaultTransport = &Transport{MaxIdlePerHost: DefaultMaxIdlePerHost}

// ForgetInstances closes the idle connections of every Caller without a
// client of its own to the instances at addrs (as Call takes them) and
// drops their pool entries: those instances are gone, and a connection
// left open to each would sit in CLOSE_WAIT. Who knows the instances (the
// dispatcher's pool, from the Catalog) calls it when some leave.
func ForgetInstances(addrs []string) {
	keys := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if host, _, err := splitAddr(a); err == nil {
			keys = append(keys, host)
		}
	}
	defaultTransport.Forget(keys...)
}

// Call runs cmd (the fop segment, UFOP name first) on the instance at addr
// ("host:port", or a base URL "http://host:port") over proto ("" means
// ProtocolHandler).
//
// Errors are *errs.Error: 504 when ctx's deadline passes, 599 otherwise,
// with ErrInstanceDied in the chain when the instance went away, and a
// *UOPError in the chain when it answered with a non-2xx status.
func (c *Caller) Call(ctx context.Context, addr string, proto Protocol, cmd string, in Input) (Output, error) {
	name := cmdName(cmd)
	wr, err := newRequest(addr, proto, cmd, in)
	if err != nil {
		return Output{}, err
	}
	var resp *http.Response
	if c.HTTP != nil {
		req, rerr := wr.httpRequest(ctx)
		if rerr != nil {
			return Output{}, errs.Wrap(http.StatusInternalServerError, rerr, "bad ufop instance address %q", addr)
		}
		resp, err = c.HTTP.Do(req)
	} else {
		resp, err = defaultTransport.do(ctx, wr)
	}
	if err != nil {
		return Output{}, callError(ctx, name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Output{}, statusError(ctx, name, resp)
	}
	max := c.MaxOutput
	if max <= 0 {
		max = DefaultMaxOutput
	}
	if resp.ContentLength > max {
		return Output{}, tooLarge(name, max)
	}
	var buf bytes.Buffer
	if resp.ContentLength > 0 {
		buf.Grow(int(resp.ContentLength))
	}
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, max+1)); err != nil {
		return Output{}, callError(ctx, name, err)
	}
	if int64(buf.Len()) > max {
		return Output{}, tooLarge(name, max)
	}
	out := Output{Data: buf.Bytes(), MIME: strings.TrimSpace(resp.Header.Get("Content-Type"))}
	if out.MIME == "" {
		out.MIME = http.DetectContentType(out.Data)
	}
	return out, nil
}

// newRequest prepares the call of cmd on the instance at addr.
func newRequest(addr string, proto Protocol, cmd string, in Input) (*wireRequest, error) {
	host, prefix, err := splitAddr(addr)
	if err != nil {
		return nil, err
	}
	w := &wireRequest{host: host, header: make([]string, 0, 12)}
	size := in.Size
	switch proto {
	case ProtocolHandler, "":
		// As url.Values.Encode would write it, without building the map.
		w.target = prefix + "/handler?cmd=" + url.QueryEscape(cmd)
		if in.URL != "" {
			w.target += "&url=" + url.QueryEscape(in.URL)
		} else {
			w.body = in.Data
			size = int64(len(in.Data))
			ctype := in.MIME
			if ctype == "" || !validHeaderValue(ctype) {
				ctype = "application/octet-stream"
			}
			w.add("Content-Type", ctype)
		}
	case ProtocolUOP:
		if in.URL == "" {
			return nil, errs.New(http.StatusInternalServerError, "%s: the uop protocol needs an input URL", cmdName(cmd))
		}
		body, jerr := json.Marshal(UOPRequest{Cmd: cmd, Src: UOPSource{
			URL:      in.URL,
			MIMEType: in.MIME,
			Fsize:    in.Size,
			Bucket:   in.Bucket,
			Key:      baseKey(in.Key),
		}})
		if jerr != nil {
			return nil, errs.Wrap(http.StatusInternalServerError, jerr, "encoding the /uop request")
		}
		w.target = prefix + "/uop"
		w.body = body
		w.add("Content-Type", "application/json")
	default:
		return nil, errs.New(http.StatusInternalServerError, "unknown ufop protocol %q", proto)
	}
	if in.Bucket != "" {
		w.add(HeaderBucket, headerEscape(in.Bucket))
	}
	if in.Key != "" {
		w.add(HeaderKey, headerEscape(in.Key))
	}
	if in.MIME != "" {
		w.add(HeaderMimetype, headerEscape(in.MIME))
	}
	w.add(HeaderFsize, strconv.FormatInt(size, 10))
	if in.ReqID != "" {
		w.add(HeaderReqID, headerEscape(in.ReqID))
	}
	return w, nil
}

// splitAddr takes an instance address, "host:port" (what catalogs give) or
// a base URL "http://host:port[/prefix]", apart into the host:port to
// connect to and a path prefix.
func splitAddr(addr string) (host, prefix string, err error) {
	if addr == "" {
		return "", "", errs.New(http.StatusInternalServerError, "ufop instance has no address")
	}
	if !strings.Contains(addr, "://") {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return "", "", badAddr(addr)
		}
		return addr, "", nil
	}
	u, err := url.Parse(addr)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.RawQuery != "" || u.User != nil {
		return "", "", badAddr(addr)
	}
	return hostPort(u), strings.TrimSuffix(u.EscapedPath(), "/"), nil
}

func badAddr(addr string) error {
	return errs.New(http.StatusInternalServerError, "bad ufop instance address %q (want host:port or http://host:port)", addr)
}

// cmdName is the UFOP name: the first token of cmd.
func cmdName(cmd string) string {
	name, _, _ := strings.Cut(cmd, "/")
	if name == "" {
		return "ufop"
	}
	return name
}

// baseKey drops the directories of a key: a/b/c.txt becomes c.txt.
func baseKey(k string) string {
	return k[strings.LastIndexByte(k, '/')+1:]
}

// headerEscape percent-encodes the bytes of s that are spaces, '%' or not
// printable ASCII, so that any key fits in a header (which would also trim
// its spaces) and url.PathUnescape restores it.
func headerEscape(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if b := s[i]; b <= 0x20 || b > 0x7e || b == '%' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b <= 0x20 || b > 0x7e || b == '%' {
			sb.WriteByte('%')
			sb.WriteByte(hex[b>>4])
			sb.WriteByte(hex[b&15])
			continue
		}
		sb.WriteByte(b)
	}
	return sb.String()
}

func tooLarge(name string, max int64) error {
	return errs.New(errs.StatusProcessingFailed, "%s: output is too large (over %d bytes)", name, max)
}

// callError classifies a transport error: a deadline is a 504, a dead
// instance a 599 with ErrInstanceDied, anything else a 599.
func callError(ctx context.Context, name string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return errs.Wrap(http.StatusGatewayTimeout, err, "%s: ufop timed out", name)
		}
		return errs.Wrap(errs.StatusProcessingFailed, ctxErr, "%s: ufop request canceled", name)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		// The client's own timeout (http.Client.Timeout).
		return errs.Wrap(http.StatusGatewayTimeout, err, "%s: ufop timed out", name)
	}
	if died(err) {
		return errs.Wrap(errs.StatusProcessingFailed, fmt.Errorf("%w: %w", ErrInstanceDied, err),
			"%s: instance died mid-request", name)
	}
	return errs.Wrap(errs.StatusProcessingFailed, err, "%s: calling the ufop failed", name)
}

// died reports whether err means the instance is gone: nothing listens, the
// connection was reset, or it was closed before the answer was complete.
func died(err error) bool {
	for _, target := range []error{
		io.EOF, io.ErrUnexpectedEOF,
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EPIPE, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	var op *net.OpError
	return errors.As(err, &op)
}

// statusError reads the instance's message from a non-2xx answer: the
// "error" of a JSON body, or the trimmed text.
func statusError(ctx context.Context, name string, resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil && len(body) == 0 && ctx.Err() != nil {
		return callError(ctx, name, err)
	}
	ue := &UOPError{Status: resp.StatusCode, Message: errorMessage(resp.Header.Get("Content-Type"), body)}
	return errs.Wrap(errs.StatusProcessingFailed, ue, "%s: %s", name, ue.Error())
}

func errorMessage(ctype string, body []byte) string {
	trimmed := bytes.TrimSpace(body)
	mt, _, _ := mime.ParseMediaType(ctype)
	if (len(trimmed) > 0 && trimmed[0] == '{') || strings.HasSuffix(mt, "json") {
		var v struct {
			Error   any `json:"error"`
			Message any `json:"message"`
		}
		if json.Unmarshal(trimmed, &v) == nil {
			for _, m := range []any{v.Error, v.Message} {
				switch m := m.(type) {
				case string:
					if m != "" {
						return cleanMessage(m)
					}
				case nil:
				default:
					if b, err := json.Marshal(m); err == nil {
						return cleanMessage(string(b))
					}
				}
			}
		}
	}
	return cleanMessage(string(trimmed))
}

// cleanMessage makes an instance's message safe for a one-line public
// error: valid UTF-8, no control characters, at most MaxErrorMessage bytes.
func cleanMessage(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > MaxErrorMessage {
		cut := MaxErrorMessage - len("…")
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
