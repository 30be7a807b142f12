// Package auth signs and verifies management requests with access/secret
// keys in Qiniu's style: "Authorization: Qiniu <AK>:<sign>", where sign is
// the URL-safe base64 of HMAC-SHA1(SK, signing string).
//
// The signing string is the one of Qiniu's Go SDK (v7, auth.SignRequestV2),
// byte for byte:
//
//	<METHOD> <path>[?<query>]
//	Host: <host>
//	Content-Type: <type>                 (application/x-www-form-urlencoded when none is sent)
//	[X-Qiniu-<Name>: <value>]...         (canonical case, sorted by name then value)
//
//	[<body>]                             (only when the type is exactly application/x-www-form-urlencoded or application/json)
//
// <path> is the URL's decoded path (what the router matches), <query> the
// raw query. Like the SDK, the body is signed only for those two exact
// types: "application/json; charset=utf-8" is not one of them.
//
// On top of the SDK's rules, Verify requires what makes a signature neither
// replayable nor bendable: X-Qiniu-Date within MaxSkew of the server's
// clock, a body that is not in the signing string covered by its SHA-256 in
// the signed header X-Qiniu-Content-Sha256 (checked while the body is read),
// and no repeated Content-Type or X-Qiniu-* header (the SDK's versions sign
// repeated values differently, and a handler may read another value than
// the one signed).
package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"sort"
	"strings"
	"time"

	"github.com/qufop/qufop/errs"
)

// Credentials are an access/secret key pair.
type Credentials struct {
	AccessKey string `json:"access_key"`
	SecretKey string `json:"secret_key"`
}

// Scheme is the Authorization scheme.
const Scheme = "Qiniu"

// Header names.
const (
	HeaderDate   = "X-Qiniu-Date"
	HeaderSHA256 = "X-Qiniu-Content-Sha256"
	dateFormat   = "20060102T150405Z"
	qiniuPrefix  = "X-Qiniu-"
)

// Content types whose bodies are in the signing string (exact strings, as
// the SDK compares them).
const (
	TypeForm = "application/x-www-form-urlencoded"
	TypeJSON = "application/json"
)

// MaxSkew is how far X-Qiniu-Date may be from the server's clock.
const MaxSkew = 15 * time.Minute

// MaxSignedBody caps the form/JSON bodies read for signing.
const MaxSignedBody = 1 << 20

// contentType is the type the signature names: the SDK signs (and sets) the
// form type when a request has none.
func contentType(h http.Header) string {
	if ct := h.Get("Content-Type"); ct != "" {
		return ct
	}
	return TypeForm
}

// bodySigned reports whether a body of type ct is in the signing string.
func bodySigned(ct string) bool { return ct == TypeForm || ct == TypeJSON }

// BodySigned reports whether r's body is part of its signature (its
// Content-Type is exactly the form or JSON type, or absent).
func BodySigned(r *http.Request) bool { return bodySigned(contentType(r.Header)) }

// BodyCovered reports whether r's body is covered by its signature: in the
// signing string, or by a signed X-Qiniu-Content-Sha256 that Verify made
// the body's reader check.
func BodyCovered(r *http.Request) bool {
	return BodySigned(r) || r.Header.Get(HeaderSHA256) != ""
}

// SigningString returns the bytes signed for r with the given body (used
// only when the body is signed).
func SigningString(r *http.Request, body []byte) []byte {
	var b bytes.Buffer
	b.WriteString(r.Method)
	b.WriteByte(' ')
	b.WriteString(r.URL.Path)
	if r.URL.RawQuery != "" {
		b.WriteByte('?')
		b.WriteString(r.URL.RawQuery)
	}
	// The SDK writes req.Host; an empty Host is sent as the URL's host by
	// Go's transport, so that is what the server sees and checks.
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	b.WriteString("\nHost: ")
	b.WriteString(host)
	ct := contentType(r.Header)
	b.WriteString("\nContent-Type: ")
	b.WriteString(ct)
	b.WriteByte('\n')
	type kv struct{ k, v string }
	var hs []kv
	for name, values := range r.Header {
		c := textproto.CanonicalMIMEHeaderKey(name)
		if len(c) > len(qiniuPrefix) && strings.HasPrefix(c, qiniuPrefix) {
			for _, v := range values {
				hs = append(hs, kv{c, v})
			}
		}
	}
	sort.Slice(hs, func(i, j int) bool {
		if hs[i].k != hs[j].k {
			return hs[i].k < hs[j].k
		}
		return hs[i].v < hs[j].v
	})
	for _, h := range hs {
		b.WriteString(h.k + ": " + h.v + "\n")
	}
	b.WriteByte('\n')
	if bodySigned(ct) {
		b.Write(body)
	}
	return b.Bytes()
}

// Sign returns the URL-safe base64 HMAC-SHA1 of data under sk.
func Sign(sk string, data []byte) string {
	m := hmac.New(sha1.New, []byte(sk))
	m.Write(data)
	return base64.URLEncoding.EncodeToString(m.Sum(nil))
}

// SignRequest sets X-Qiniu-Date and Authorization on r (and, like the SDK,
// the form Content-Type when r has none). body is the request body when it
// is signed (a form or JSON body), nil otherwise; an unsigned body needs
// its SHA-256 in X-Qiniu-Content-Sha256, set by the caller.
func SignRequest(r *http.Request, body []byte, c Credentials, now time.Time) {
	if r.Header.Get("Content-Type") == "" {
		r.Header.Set("Content-Type", TypeForm)
	}
	r.Header.Set(HeaderDate, now.UTC().Format(dateFormat))
	sig := Sign(c.SecretKey, SigningString(r, body))
	r.Header.Set("Authorization", Scheme+" "+c.AccessKey+":"+sig)
}

// Lookup returns the secret key and user name of an access key.
type Lookup func(accessKey string) (secretKey, user string, ok bool)

var errUnauthorized = errors.New("unauthorized")

func unauthorized(format string, a ...any) error {
	return errs.Wrap(http.StatusUnauthorized, errUnauthorized, format, a...)
}

// Verify checks r's signature and returns the user it belongs to. It reads
// (and restores) a signed form/JSON body; any other body must come with a
// signed X-Qiniu-Content-Sha256, and r.Body is then wrapped so that reading
// it to its end fails with ErrDigestMismatch unless the data matches.
// Failures are 401s (400s for a malformed request) that say why without
// revealing which keys exist.
func Verify(r *http.Request, lookup Lookup, now time.Time) (string, error) {
	h := r.Header.Get("Authorization")
	rest, ok := strings.CutPrefix(h, Scheme+" ")
	if !ok {
		if h == "" {
			return "", unauthorized("missing Authorization: sign requests with your access and secret keys (qufop login)")
		}
		return "", unauthorized("bad Authorization: want %q", Scheme+" <AK>:<sign>")
	}
	ak, sig, ok := strings.Cut(rest, ":")
	if !ok || ak == "" || sig == "" {
		return "", unauthorized("bad Authorization: want %q", Scheme+" <AK>:<sign>")
	}
	d := r.Header.Get(HeaderDate)
	if d == "" {
		return "", unauthorized("missing %s: sign it with the current UTC time (%s), so that the request cannot be replayed later", HeaderDate, dateFormat)
	}
	t, err := parseDate(d)
	if err != nil {
		return "", unauthorized("bad %s %q: want the UTC time as %s", HeaderDate, d, dateFormat)
	}
	if skew := now.Sub(t); skew > MaxSkew || skew < -MaxSkew {
		return "", unauthorized("request date %s is more than %s from the server's clock: sign with the current time (check this machine's clock)", d, MaxSkew)
	}
	if err := checkRepeated(r.Header); err != nil {
		return "", err
	}
	signed := BodySigned(r)
	sum := r.Header.Get(HeaderSHA256)
	if sum != "" && !isSHA256(sum) {
		return "", errs.BadRequest("bad %s %q: want the body's SHA-256 in hex", HeaderSHA256, sum)
	}
	var body []byte
	if signed && r.Body != nil {
		b, err := io.ReadAll(io.LimitReader(r.Body, MaxSignedBody+1))
		if err != nil {
			return "", errs.Wrap(http.StatusBadRequest, err, "reading the request body failed")
		}
		if len(b) > MaxSignedBody {
			return "", errs.New(http.StatusRequestEntityTooLarge, "request body too large: over %d bytes", MaxSignedBody)
		}
		body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	if !signed && hasBody(r) && sum == "" {
		return "", errs.BadRequest("missing %s: a %s body is not part of the signature, so send its SHA-256 (hex) in this signed header", HeaderSHA256, r.Header.Get("Content-Type"))
	}
	sk, user, ok := lookup(ak)
	if !ok {
		return "", unauthorized("bad access key or signature")
	}
	want := Sign(sk, SigningString(r, body))
	if subtle.ConstantTimeCompare([]byte(want), []byte(sig)) != 1 {
		return "", unauthorized("bad access key or signature")
	}
	if !signed && sum != "" && r.Body != nil && r.Body != http.NoBody {
		r.Body = digestBody{NewDigestReader(r.Body, sum), r.Body}
	}
	return user, nil
}

// hasBody reports whether the server may read a body from r.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// checkRepeated refuses a request that sends Content-Type or an X-Qiniu-*
// header more than once: which of the values is signed, and which one a
// handler reads, would then be open to interpretation.
func checkRepeated(h http.Header) error {
	for name, values := range h {
		c := textproto.CanonicalMIMEHeaderKey(name)
		if len(values) > 1 && (c == "Content-Type" || strings.HasPrefix(c, qiniuPrefix)) {
			return errs.BadRequest("header %s sent %d times: send it once", c, len(values))
		}
	}
	return nil
}

func isSHA256(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32
}

// digestBody is a request body whose reads check the digest, closed as the
// original.
type digestBody struct {
	io.Reader
	io.Closer
}

func parseDate(s string) (time.Time, error) {
	if t, err := time.Parse(dateFormat, s); err == nil {
		return t, nil
	}
	return time.Parse(time.RFC3339, s)
}

// ErrDigestMismatch is returned by a DigestReader whose data does not match.
var ErrDigestMismatch = errors.New("content does not match " + HeaderSHA256)

// String is for debugging: it never shows the secret key.
func (c Credentials) String() string { return fmt.Sprintf("AK %s", c.AccessKey) }
