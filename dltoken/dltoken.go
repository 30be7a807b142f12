// Package dltoken checks Qiniu's download tokens, the ones that open a
// private bucket's objects and processing URLs:
//
//	<scheme>://<host>/<key>[?<chain>[&<params>]]&e=<unix deadline>&token=<AK>:<sign>
//
// (with '?' instead of the first '&' when the URL had no query). sign is
// the URL-safe base64 of HMAC-SHA1(SK, everything before "&token="): the
// scheme, the host, the path and the whole query including the chain and
// e=<deadline>, byte for byte as the client sends it. That is what the Go
// SDK's storage.MakePrivateURL (v7) signs.
//
// The gateway sees the host (the Host header, or the host of an
// absolute-form request target) and the request target, but not always the
// scheme: TLS is usually ended by a proxy in front of it. So a signature is
// accepted over "http://" or "https://" followed by the same host and
// target: the scheme grants nothing, the host and everything after it are
// what is signed. A proxy in front must therefore pass the client's Host
// and request target on unchanged (nginx: proxy_set_header Host $host;
// proxy_pass without a URI part).
//
// token= must be the last parameter: one after it would not be signed.
package dltoken

import (
	"crypto/hmac"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/errs"
)

// ErrUnauthorized is the cause of every refusal (each a 401).
var ErrUnauthorized = errors.New("bad download token")

func refuse(format string, a ...any) error {
	return errs.Wrap(http.StatusUnauthorized, ErrUnauthorized, format, a...)
}

const tokenParam = "token="

// Token is a checked download token.
type Token struct {
	User     string    // whose keys signed it
	Deadline time.Time // e=
}

// Check verifies the download token of a request for the private bucket
// called bucket: target is its request target as sent (origin form
// "/key?query", or absolute form "http://host/key?query"), host its Host
// header. It returns whose token it is; the caller decides whether that
// user may read the bucket. Failures are 401s that say why without telling
// which access keys exist.
func Check(bucket, target, host string, lookup auth.Lookup, now time.Time) (Token, error) {
	i := strings.LastIndex(target, "&"+tokenParam)
	if i < 0 {
		return Token{}, refuse("bucket %q is private: a download token is required (e=<deadline>&token=<AK>:<sign>, as Qiniu's MakePrivateURL makes it)", bucket)
	}
	signed, tok := target[:i], target[i+1+len(tokenParam):]
	if strings.ContainsAny(tok, "&#") {
		return Token{}, refuse("bad download token: token= must be the last parameter (any after it would not be signed)")
	}
	if u, err := url.QueryUnescape(tok); err == nil {
		tok = u // a client may have escaped ':' or '='
	}
	ak, sig, ok := strings.Cut(tok, ":")
	if !ok || ak == "" || sig == "" {
		return Token{}, refuse("bad download token: want token=<AK>:<sign>")
	}
	deadline, ok := deadlineOf(signed)
	if !ok {
		return Token{}, refuse("bad download token: e=<unix deadline> must come right before token=")
	}
	sk, user, known := lookup(ak)
	if !known || !signedBy(sk, sig, signed, host) {
		return Token{}, refuse("bad download token: the signature does not match the URL (sign scheme://host/path?query&e=<deadline> with the secret key of the access key)")
	}
	// The deadline is believed only once the signature covers it.
	if now.Unix() > deadline {
		return Token{}, refuse("download token expired at %s (e=%d): make a new URL", time.Unix(deadline, 0).UTC().Format(time.RFC3339), deadline)
	}
	return Token{User: user, Deadline: time.Unix(deadline, 0)}, nil
}

// deadlineOf returns the e=<digits> that ends the signed part of a URL, as
// its last parameter.
func deadlineOf(signed string) (int64, bool) {
	j := strings.LastIndexAny(signed, "?&")
	if j < 0 {
		return 0, false
	}
	v, ok := strings.CutPrefix(signed[j+1:], "e=")
	if !ok || v == "" || strings.TrimLeft(v, "0123456789") != "" {
		return 0, false
	}
	e, err := strconv.ParseInt(v, 10, 64)
	return e, err == nil
}

// signedBy reports whether sig signs signed (a request target, or an
// absolute URL) under sk, with either scheme.
func signedBy(sk, sig, signed, host string) bool {
	var candidates []string
	if strings.HasPrefix(signed, "http://") || strings.HasPrefix(signed, "https://") {
		candidates = []string{signed}
	} else {
		candidates = []string{"http://" + host + signed, "https://" + host + signed}
	}
	for _, c := range candidates {
		if hmac.Equal([]byte(auth.Sign(sk, []byte(c))), []byte(sig)) {
			return true
		}
	}
	return false
}
