package control_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/client/clienttest"
	"github.com/qufop/qufop/control"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/ufop"
)

// bodyServer is a management API whose uploads are capped at maxUpload
// bytes, with one user.
func bodyServer(t *testing.T, maxUpload int64) (string, auth.Credentials) {
	t.Helper()
	gin.SetMode(gin.TestMode)
	creds := auth.NewCredentials()
	users := &auth.Users{}
	users.Add(clienttest.User, creds)
	cfg := control.NewDefaultConfig()
	cfg.WorkDir = t.TempDir()
	cfg.MaxUploadBytes = maxUpload
	srv := control.New(cfg, ufop.NewKeeper(clienttest.NewKV()), clienttest.Builder{}, clienttest.NewBuildLogs(),
		clienttest.NewOrchestrator(time.Millisecond), users.Lookup, nil)
	e := gin.New()
	srv.Mount(e)
	ts := httptest.NewServer(e)
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
	})
	return ts.URL, creds
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// sendSigned sends a request signed with creds; ctype "" sends none (the
// signature then names the form type, as Qiniu's SDK signs). digest adds
// the body's X-Qiniu-Content-Sha256; chunked hides the length.
func sendSigned(t *testing.T, creds auth.Credentials, method, url, ctype string, body []byte, digest, chunked bool) (int, string) {
	t.Helper()
	var rd io.Reader = bytes.NewReader(body)
	if chunked {
		rd = io.MultiReader(rd) // no length known: sent chunked
	}
	r, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	if digest {
		r.Header.Set(auth.HeaderSHA256, hexSum(body))
	}
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	var signed []byte
	if auth.BodySigned(r) {
		signed = body
	}
	r.Header.Set(auth.HeaderDate, time.Now().UTC().Format("20060102T150405Z"))
	r.Header.Set("Authorization", "Qiniu "+creds.AccessKey+":"+auth.Sign(creds.SecretKey, auth.SigningString(r, signed)))
	resp, err := http.DefaultClient.Do(r)
	require.NoError(t, err)
	defer resp.Body.Close()
	var e api.Error
	b, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return resp.StatusCode, e.Error
	}
	return resp.StatusCode, string(b)
}

// TestJSONOnlyWhenSigned: a JSON handler decodes a body only when it is
// covered by the signature (type exactly application/json, or another JSON
// type with a signed digest); anything else is 415 and not parsed.
func TestJSONOnlyWhenSigned(t *testing.T) {
	url, creds := bodyServer(t, 1<<20)
	reg := func(name string) []byte { return []byte(`{"name":"` + name + `","mode":"private"}`) }
	tests := []struct {
		name, ufop, ctype string
		digest            bool
		status            int
		msg               string
	}{
		{"json", "json-ok", "application/json", false, 200, ""},
		{"json with charset and digest", "charset-ok", "application/json; charset=utf-8", true, 200, ""},
		{"json with charset, no digest", "charset-bad", "application/json; charset=utf-8", false, 400, "missing X-Qiniu-Content-Sha256"},
		{"text/plain with digest", "text-bad", "text/plain", true, 415, "Content-Type text/plain: send the body as application/json"},
		{"no content type", "none-bad", "", false, 415, "send the body as application/json"},
		{"form", "form-bad", auth.TypeForm, false, 415, "send the body as application/json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, msg := sendSigned(t, creds, "POST", url+"/v1/ufops", tc.ctype, reg(tc.ufop), tc.digest, false)
			assert.Equal(t, tc.status, code, msg)
			if tc.msg != "" {
				assert.Contains(t, msg, tc.msg)
			}
			c := client.New(url, creds)
			_, err := c.Info(context.Background(), tc.ufop)
			if tc.status == 200 {
				assert.NoError(t, err)
			} else {
				assert.True(t, client.IsStatus(err, 404), "%s was registered: %v", tc.ufop, err)
			}
		})
	}
}

// TestJSONDigestMismatch: a JSON body covered by a digest is read whole
// and refused when it does not match, before anything is decoded.
func TestJSONDigestMismatch(t *testing.T) {
	url, creds := bodyServer(t, 1<<20)
	body := []byte(`{"name":"swapped","mode":"private"}`)
	r, err := http.NewRequest("POST", url+"/v1/ufops", bytes.NewReader(body))
	require.NoError(t, err)
	r.Header.Set("Content-Type", "application/json; charset=utf-8")
	r.Header.Set(auth.HeaderSHA256, hexSum([]byte(`{"name":"signed","mode":"private"}`)))
	auth.SignRequest(r, nil, creds, time.Now())
	resp, err := http.DefaultClient.Do(r)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 400, resp.StatusCode)
	_, err = client.New(url, creds).Info(context.Background(), "swapped")
	assert.True(t, client.IsStatus(err, 404), "%v", err)
}

func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, body := range files {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body))}))
		_, err := tw.Write([]byte(body))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	return b.Bytes()
}

// TestUploadDigestAndSize: a tarball needs its digest; one over the cap is
// "too large" (413) whether or not its digest also fails, even when its
// length is not announced.
func TestUploadDigestAndSize(t *testing.T) {
	const max = 16 << 10
	url, creds := bodyServer(t, max)
	_, err := client.New(url, creds).Register(context.Background(), "upl", "2", "")
	require.NoError(t, err)
	small := tarOf(t, map[string]string{"ufop.yaml": "image: ubuntu\nrun: ./app\n", "app": "#!/bin/sh\n"})
	big := tarOf(t, map[string]string{"ufop.yaml": "image: ubuntu\nrun: ./app\n", "app": strings.Repeat("x", 2*max)})
	target := url + "/v1/ufops/upl/versions"
	tests := []struct {
		name    string
		body    []byte
		digest  bool
		chunked bool
		status  int
		msg     string
	}{
		{"with digest", small, true, false, 202, ""},
		{"no digest", small, false, false, 400, "missing X-Qiniu-Content-Sha256"},
		{"no digest, chunked", small, false, true, 400, "missing X-Qiniu-Content-Sha256"},
		{"too large", big, true, false, 413, "too large"},
		{"too large, chunked", big, true, true, 413, "too large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, msg := sendSigned(t, creds, "POST", target, "application/x-tar", tc.body, tc.digest, tc.chunked)
			assert.Equal(t, tc.status, code, msg)
			assert.Contains(t, msg, tc.msg)
			assert.NotContains(t, msg, "corrupted")
		})
	}
	// Over the cap and not matching its digest: still "too large".
	r, err := http.NewRequest("POST", target, io.MultiReader(bytes.NewReader(big)))
	require.NoError(t, err)
	r.Header.Set("Content-Type", "application/x-tar")
	r.Header.Set(auth.HeaderSHA256, hexSum(small))
	auth.SignRequest(r, nil, creds, time.Now())
	resp, err := http.DefaultClient.Do(r)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 413, resp.StatusCode, "%s", b)
	assert.Contains(t, string(b), "too large")
}
