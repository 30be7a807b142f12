// Package auth signs and verifies management requests with access/secret
// keys in Qiniu's style: "Authorization: Qiniu <AK>:<sign>", where sign is
// the URL-safe base64 of HMAC-SHA1(SK, signing string).
//
// The signing string follows Qiniu's "Qiniu" token:
//
//	<METHOD> <path>[?<query>]
//	Host: <host>
//	[Content-Type: <type>]
//	[X-Qiniu-<Name>: <value>]...   (sorted by name, canonical case)
//
//	[<body, for form and JSON bodies only>]
//
// Large bodies (tarballs) are not in the signing string; clients send their
// SHA-256 in the signed header X-Qiniu-Content-Sha256 instead, and the server
// checks it while reading. X-Qiniu-Date (RFC 3339 or Qiniu's 20060102T150405Z)
// is signed when present and must be within MaxSkew of the server's clock,
// so a captured request cannot be replayed later.
package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
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
)

// MaxSkew is how far X-Qiniu-Date may be from the server's clock.
const MaxSkew = 15 * time.Minute

// MaxSignedBody caps the form/JSON bodies read for signing.
const MaxSignedBody = 1 << 20

// bodySigned reports whether the body is part of the signing string.
func bodySigned(contentType string) bool {
	ct, _, _ := strings.Cut(contentType, ";")
	ct = strings.TrimSpace(strings.ToLower(ct))
	return ct == "application/x-www-form-urlencoded" || ct == "application/json"
}

// SigningString returns the bytes signed for r with the given body.
func SigningString(r *http.Request, body []byte) []byte {
	var b bytes.Buffer
	b.WriteString(r.Method)
	b.WriteByte(' ')
	b.WriteString(r.URL.EscapedPath())
	if r.URL.RawQuery != "" {
		b.WriteByte('?')
		b.WriteString(r.URL.RawQuery)
	}
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	b.WriteString("\nHost: ")
	b.WriteString(host)
	ct := r.Header.Get("Content-Type")
	if ct != "" {
		b.WriteString("\nContent-Type: ")
		b.WriteString(ct)
	}
	var names []string
	for name := range r.Header {
		c := http.CanonicalHeaderKey(name)
		if strings.HasPrefix(c, "X-Qiniu-") {
			names = append(names, c)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		b.WriteString("\n" + n + ": " + r.Header.Get(n))
	}
	b.WriteString("\n\n")
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

// SignRequest sets X-Qiniu-Date and Authorization on r. body is the request
// body when it is a form or JSON body (it is signed), nil otherwise.
func SignRequest(r *http.Request, body []byte, c Credentials, now time.Time) {
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
// (and restores) a signed form/JSON body. Failures are 401s that say why
// without revealing which keys exist.
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
	if d := r.Header.Get(HeaderDate); d != "" {
		t, err := parseDate(d)
		if err != nil {
			return "", unauthorized("bad %s %q", HeaderDate, d)
		}
		if skew := now.Sub(t); skew > MaxSkew || skew < -MaxSkew {
			return "", unauthorized("request date %s is more than %s from the server's clock", d, MaxSkew)
		}
	}
	var body []byte
	if bodySigned(r.Header.Get("Content-Type")) && r.Body != nil {
		b, err := io.ReadAll(io.LimitReader(r.Body, MaxSignedBody+1))
		if err != nil {
			return "", errs.Wrap(http.StatusBadRequest, err, "reading the request body failed")
		}
		if len(b) > MaxSignedBody {
			return "", errs.New(http.StatusRequestEntityTooLarge, "request body over %d bytes", MaxSignedBody)
		}
		body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	sk, user, ok := lookup(ak)
	if !ok {
		return "", unauthorized("bad access key or signature")
	}
	want := Sign(sk, SigningString(r, body))
	if subtle.ConstantTimeCompare([]byte(want), []byte(sig)) != 1 {
		return "", unauthorized("bad access key or signature")
	}
	return user, nil
}

func parseDate(s string) (time.Time, error) {
	if t, err := time.Parse(dateFormat, s); err == nil {
		return t, nil
	}
	return time.Parse(time.RFC3339, s)
}

// ErrDigestMismatch is returned by a DigestReader whose data does not match.
var ErrDigestMismatch = errors.New("content does not match " + HeaderSHA256)

// String is for debugging.
func (c Credentials) String() string { return fmt.Sprintf("AK %s", c.AccessKey) }
