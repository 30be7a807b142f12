package auth_test

// Qiniu's Go SDK (v7) is the oracle of the signing string: requests it
// signs verify with auth.Verify once they have crossed a real HTTP
// connection, and the server side recomputes with the SDK the signature of
// requests auth.SignRequest signed. The SDK is imported by this test only.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	qauth "github.com/qiniu/go-sdk/v7/auth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
)

var sdkCred = auth.Credentials{AccessKey: "AK_SDK_ORACLE", SecretKey: "SK_SDK_ORACLE"}

// shape is one request of the oracle tests.
type shape struct {
	method, target, ctype, body string
	headers                     [][2]string // X-Qiniu-* and others, set with Header.Set
}

func (s shape) String() string {
	return fmt.Sprintf("%s %s ct=%q body=%d hdr=%v", s.method, s.target, s.ctype, len(s.body), s.headers)
}

// shapes are requests of many shapes: methods, paths with escapes,
// queries (empty, repeated keys, escapes), content types (none, form,
// JSON, JSON with charset, tar, text), several X-Qiniu-* headers in mixed
// case, bodies.
func shapes() []shape {
	var out []shape
	targets := []string{
		"/v1/ufops",
		"/v1/ufops/demo/versions?desc=first%20one",
		"/v1/ufops/a%20b/instances/1/log?follow=1",
		"/v1/whoami?b=2&a=1&a=0",
		"/v1/ufops/x?q=%2F%3F&empty=",
	}
	bodies := []struct{ ctype, body string }{
		{"", ""},
		{auth.TypeForm, "a=1&b=two"},
		{auth.TypeJSON, `{"name":"demo","mode":"private"}`},
		{"application/json; charset=utf-8", `{"count":3}`},
		{"application/x-tar", "not really a tarball\x00\x01"},
		{"text/plain", `{"count":3}`},
	}
	headers := [][][2]string{
		nil,
		{{"X-Qiniu-Zeta", "z"}, {"x-qiniu-alpha", "a b"}, {"X-Other", "unsigned"}},
		{{"X-QINIU-MIXED-case", "1"}, {"X-Qiniu-A", ""}, {"X-Qiniu-", "too short a name"}},
	}
	i := 0
	for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
		for _, tg := range targets {
			for _, b := range bodies {
				if m == "GET" && b.body != "" {
					continue
				}
				out = append(out, shape{m, tg, b.ctype, b.body, headers[i%len(headers)]})
				i++
			}
		}
	}
	return out
}

func sum(b string) string {
	s := sha256.Sum256([]byte(b))
	return hex.EncodeToString(s[:])
}

// clientRequest is s as a client builds it: dated, and with the digest of
// a body that is not signed (auth.Verify requires it).
func clientRequest(t *testing.T, base string, s shape) *http.Request {
	t.Helper()
	var body io.Reader
	if s.body != "" {
		body = strings.NewReader(s.body)
	}
	r, err := http.NewRequest(s.method, base+s.target, body)
	require.NoError(t, err)
	if s.ctype != "" {
		r.Header.Set("Content-Type", s.ctype)
	}
	for _, h := range s.headers {
		r.Header.Set(h[0], h[1])
	}
	if s.body != "" && s.ctype != auth.TypeForm && s.ctype != auth.TypeJSON && s.ctype != "" {
		r.Header.Set(auth.HeaderSHA256, sum(s.body))
	}
	r.Header.Set(auth.HeaderDate, time.Now().UTC().Format("20060102T150405Z"))
	return r
}

func lookup(ak string) (string, string, bool) {
	if ak == sdkCred.AccessKey {
		return sdkCred.SecretKey, "alice", true
	}
	return "", "", false
}

// verifier answers 200 with the user when auth.Verify accepts the request
// and its body reads back whole, else the error.
func verifier(w http.ResponseWriter, r *http.Request) {
	user, err := auth.Verify(r, lookup, time.Now())
	if err != nil {
		http.Error(w, err.Error(), 401)
		return
	}
	if _, err := io.ReadAll(r.Body); err != nil {
		http.Error(w, "body: "+err.Error(), 400)
		return
	}
	fmt.Fprint(w, user)
}

// sdkChecker answers 200 when the SDK's own signature of the request as
// received equals its Authorization.
func sdkChecker(w http.ResponseWriter, r *http.Request) {
	got := r.Header.Get("Authorization")
	token, err := qauth.New(sdkCred.AccessKey, sdkCred.SecretKey).SignRequestV2(r)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	if got != "Qiniu "+token {
		http.Error(w, fmt.Sprintf("Authorization %q, the SDK signs %q", got, "Qiniu "+token), 401)
		return
	}
	fmt.Fprint(w, "ok")
}

func send(t *testing.T, r *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(r)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestSDKSignedRequestsVerify(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(verifier))
	t.Cleanup(ts.Close)
	sdk := qauth.New(sdkCred.AccessKey, sdkCred.SecretKey)
	for _, s := range shapes() {
		r := clientRequest(t, ts.URL, s)
		require.NoError(t, sdk.AddToken(qauth.TokenQiniu, r), s)
		code, body := send(t, r)
		assert.Equal(t, 200, code, "%v: %s", s, body)
		assert.Equal(t, "alice", body, "%v", s)
	}
}

func TestOurSignedRequestsMatchTheSDK(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(sdkChecker))
	t.Cleanup(ts.Close)
	sdk := qauth.New(sdkCred.AccessKey, sdkCred.SecretKey)
	for _, s := range shapes() {
		r := clientRequest(t, ts.URL, s)
		var signed []byte
		if auth.BodySigned(r) {
			signed = []byte(s.body)
		}
		auth.SignRequest(r, signed, sdkCred, time.Now())
		// On the client side too, before anything crosses the wire.
		token, err := sdk.SignRequestV2(r.Clone(r.Context()))
		require.NoError(t, err)
		assert.Equal(t, "Qiniu "+token, r.Header.Get("Authorization"), "%v", s)
		if r.Body != nil {
			// The SDK read the body of the clone, which shares it.
			r.Body = io.NopCloser(strings.NewReader(s.body))
		}
		code, body := send(t, r)
		assert.Equal(t, 200, code, "%v: %s", s, body)
	}
}

// TestSigningStringRepeatedHeaders: the SDK v7 signs every value of a
// repeated X-Qiniu-* header, sorted by value; so does SigningString (and
// Verify refuses such requests, since later SDK versions sign only the
// first value).
func TestSigningStringRepeatedHeaders(t *testing.T) {
	r := httptest.NewRequest("POST", "http://h.example/v1/x?y=1", bytes.NewReader([]byte(`{"a":1}`)))
	r.Header.Set("Content-Type", auth.TypeJSON)
	r.Header.Add("X-Qiniu-B", "2")
	r.Header.Add("X-Qiniu-B", "1")
	r.Header.Add("X-Qiniu-A", "0")
	token, err := qauth.New(sdkCred.AccessKey, sdkCred.SecretKey).SignRequestV2(r)
	require.NoError(t, err)
	assert.Equal(t, sdkCred.AccessKey+":"+auth.Sign(sdkCred.SecretKey, auth.SigningString(r, []byte(`{"a":1}`))), token)
}
