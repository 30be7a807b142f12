package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/errs"
)

var (
	cred = Credentials{AccessKey: "AK_EXAMPLE", SecretKey: "SK_EXAMPLE"}
	now  = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
)

func users() *Users {
	u := &Users{}
	u.Add("alice", cred)
	return u
}

func TestSigningString(t *testing.T) {
	r := httptest.NewRequest("POST", "http://api.example.com/v1/ufops?x=1", strings.NewReader(`{"name":"a"}`))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Qiniu-Zeta", "z")
	r.Header.Set("x-qiniu-alpha", "a")
	r.Header.Set("X-Other", "not signed")
	got := string(SigningString(r, []byte(`{"name":"a"}`)))
	assert.Equal(t, "POST /v1/ufops?x=1\nHost: api.example.com\nContent-Type: application/json\nX-Qiniu-Alpha: a\nX-Qiniu-Zeta: z\n\n{\"name\":\"a\"}", got)

	// Octet-stream bodies are not signed.
	r = httptest.NewRequest("PUT", "http://h/v1/x", nil)
	r.Header.Set("Content-Type", "application/octet-stream")
	assert.Equal(t, "PUT /v1/x\nHost: h\nContent-Type: application/octet-stream\n\n", string(SigningString(r, []byte("tar"))))
}

func TestSignKnownValue(t *testing.T) {
	// The saveas example of qiniu-compat.md §1.3 uses the same HMAC-SHA1 +
	// URL-safe base64 construction.
	assert.Equal(t, "w9Nm748D5BfGciOvvzYLgjpU-EQ=",
		Sign("SK_EXAMPLE", []byte("cdn.example.com/cat.jpg?imageView2/2/w/200|saveas/bXlidWNrZXQ6dGh1bWJzL2NhdC0yMDAuanBn")))
}

func signed(method, target, ct, body string) *http.Request {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	var b []byte
	if bodySigned(ct) {
		b = []byte(body)
	}
	SignRequest(r, b, cred, now)
	return r
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name   string
		req    func() *http.Request
		at     time.Time
		user   string
		errMsg string
	}{
		{"json body", func() *http.Request { return signed("POST", "http://h/v1/ufops", "application/json", `{"a":1}`) }, now, "alice", ""},
		{"no body", func() *http.Request { return signed("GET", "http://h/v1/ufops/x?follow=1", "", "") }, now, "alice", ""},
		{"missing", func() *http.Request { return httptest.NewRequest("GET", "http://h/v1/ufops", nil) }, now, "", "missing Authorization"},
		{"other scheme", func() *http.Request {
			r := httptest.NewRequest("GET", "http://h/v1/ufops", nil)
			r.Header.Set("Authorization", "Bearer x")
			return r
		}, now, "", "bad Authorization"},
		{"tampered body", func() *http.Request {
			r := signed("POST", "http://h/v1/ufops", "application/json", `{"a":1}`)
			r.Body = io.NopCloser(strings.NewReader(`{"a":2}`))
			return r
		}, now, "", "bad access key or signature"},
		{"tampered query", func() *http.Request {
			r := signed("GET", "http://h/v1/ufops?n=1", "", "")
			r.URL.RawQuery = "n=2"
			return r
		}, now, "", "bad access key or signature"},
		{"tampered signed header", func() *http.Request {
			r := signed("PUT", "http://h/v1/x", "application/octet-stream", "")
			r.Header.Set(HeaderSHA256, strings.Repeat("00", 32))
			return r
		}, now, "", "bad access key or signature"},
		{"no date", func() *http.Request {
			r := signed("GET", "http://h/v1/ufops", "", "")
			r.Header.Del(HeaderDate)
			r.Header.Set("Authorization", Scheme+" "+cred.AccessKey+":"+Sign(cred.SecretKey, SigningString(r, nil)))
			return r
		}, now, "", "missing X-Qiniu-Date: sign it with the current UTC time"},
		{"bad date", func() *http.Request {
			r := httptest.NewRequest("GET", "http://h/v1/ufops", nil)
			SignRequest(r, nil, cred, now)
			r.Header.Set(HeaderDate, "yesterday")
			return r
		}, now, "", "bad X-Qiniu-Date"},
		{"date ahead", func() *http.Request { return signed("GET", "http://h/v1/ufops", "", "") }, now.Add(-MaxSkew - time.Second), "", "from the server's clock"},
		{"date at the edge", func() *http.Request { return signed("GET", "http://h/v1/ufops", "", "") }, now.Add(MaxSkew), "alice", ""},
		{"json with charset, body tampered", func() *http.Request {
			// Not a signed type (as in Qiniu's SDK): without a digest the
			// body is covered by nothing, so it is refused.
			r := signed("POST", "http://h/v1/ufops", "application/json; charset=utf-8", `{"a":1}`)
			r.Body = io.NopCloser(strings.NewReader(`{"a":2}`))
			return r
		}, now, "", "missing X-Qiniu-Content-Sha256: a application/json; charset=utf-8 body is not part of the signature"},
		{"tarball without digest", func() *http.Request {
			return signed("POST", "http://h/v1/ufops/x/versions", "application/x-tar", "tar")
		}, now, "", "missing X-Qiniu-Content-Sha256"},
		{"text body without digest", func() *http.Request {
			return signed("PUT", "http://h/v1/ufops/x/instances", "text/plain", `{"count":9}`)
		}, now, "", "missing X-Qiniu-Content-Sha256"},
		{"digest not hex", func() *http.Request {
			r := httptest.NewRequest("POST", "http://h/v1/ufops/x/versions", strings.NewReader("tar"))
			r.Header.Set("Content-Type", "application/x-tar")
			r.Header.Set(HeaderSHA256, "not-a-sum")
			SignRequest(r, nil, cred, now)
			return r
		}, now, "", "bad X-Qiniu-Content-Sha256"},
		{"repeated X-Qiniu header", func() *http.Request {
			r := httptest.NewRequest("GET", "http://h/v1/ufops", nil)
			r.Header.Add("X-Qiniu-Extra", "1")
			r.Header.Add("X-Qiniu-Extra", "2")
			SignRequest(r, nil, cred, now)
			return r
		}, now, "", "header X-Qiniu-Extra sent 2 times"},
		{"repeated Content-Type", func() *http.Request {
			r := signed("POST", "http://h/v1/ufops", "application/json", `{"a":1}`)
			r.Header.Add("Content-Type", "text/plain")
			return r
		}, now, "", "header Content-Type sent 2 times"},
		{"unknown key", func() *http.Request {
			r := httptest.NewRequest("GET", "http://h/v1/ufops", nil)
			SignRequest(r, nil, Credentials{AccessKey: "nobody", SecretKey: "x"}, now)
			return r
		}, now, "", "bad access key or signature"},
		{"replayed later", func() *http.Request { return signed("GET", "http://h/v1/ufops", "", "") }, now.Add(time.Hour), "", "from the server's clock"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			user, err := Verify(tc.req(), users().Lookup, tc.at)
			if tc.errMsg == "" {
				require.NoError(t, err)
				assert.Equal(t, tc.user, user)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.errMsg)
			st := errs.Status(err)
			assert.True(t, st == 401 || st == 400, "status %d", st)
		})
	}
}

func TestVerifyRestoresBody(t *testing.T) {
	r := signed("POST", "http://h/v1/ufops", "application/json", `{"a":1}`)
	_, err := Verify(r, users().Lookup, now)
	require.NoError(t, err)
	b, _ := io.ReadAll(r.Body)
	assert.Equal(t, `{"a":1}`, string(b))
}

// TestVerifyChecksUnsignedBody: a body outside the signing string is read
// through its signed digest: another body fails at its end.
func TestVerifyChecksUnsignedBody(t *testing.T) {
	for _, tc := range []struct {
		name, sent string
		wantErr    bool
	}{{"same body", "tarball", false}, {"other body", "tarbalL", true}} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "http://h/v1/ufops/x/versions", strings.NewReader(tc.sent))
			r.Header.Set("Content-Type", "application/x-tar")
			sum := sha256Hex("tarball")
			r.Header.Set(HeaderSHA256, sum)
			SignRequest(r, nil, cred, now)
			_, err := Verify(r, users().Lookup, now)
			require.NoError(t, err)
			_, err = io.ReadAll(r.Body)
			if tc.wantErr {
				assert.ErrorIs(t, err, ErrDigestMismatch)
			} else {
				assert.NoError(t, err)
			}
		})
	}
}

func sha256Hex(s string) string {
	b := sha256.Sum256([]byte(s))
	return hex.EncodeToString(b[:])
}

func TestDigestReader(t *testing.T) {
	const sum = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" // sha256("hello")
	b, err := io.ReadAll(NewDigestReader(bytes.NewReader([]byte("hello")), sum))
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	_, err = io.ReadAll(NewDigestReader(bytes.NewReader([]byte("hellO")), sum))
	assert.ErrorIs(t, err, ErrDigestMismatch)
}

func TestNewCredentials(t *testing.T) {
	a, b := NewCredentials(), NewCredentials()
	assert.Len(t, a.AccessKey, 20)
	assert.Len(t, a.SecretKey, 40)
	assert.NotEqual(t, a, b)
}
