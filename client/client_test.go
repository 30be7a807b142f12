package client_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/client/clienttest"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/ufop"
)

func tarball(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, body := range files {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(body))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	return b.Bytes()
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func upload(t *testing.T, c *client.Client, name, run string) int {
	t.Helper()
	tb := tarball(t, map[string]string{"ufop.yaml": "image: ubuntu\nrun: " + run + "\n", "app": "#!/bin/sh\n"})
	v, err := c.Upload(context.Background(), name, "v of "+run, bytes.NewReader(tb), int64(len(tb)), sum(tb))
	require.NoError(t, err)
	var log strings.Builder
	require.NoError(t, c.BuildLog(context.Background(), name, v, true, &log))
	assert.Contains(t, log.String(), "step 3/3")
	return v
}

func TestClientFlow(t *testing.T) {
	srv := clienttest.Start(t)
	ctx := context.Background()
	// host:port works as well as a URL.
	c := client.New(strings.TrimPrefix(srv.URL, "http://"), srv.Creds)

	user, err := c.WhoAmI(ctx)
	require.NoError(t, err)
	assert.Equal(t, clienttest.User, user)

	rec, err := c.Register(ctx, "demo-md5", "2", "md5 of things")
	require.NoError(t, err)
	assert.Equal(t, "private", rec.Mode)
	_, err = c.Register(ctx, "demo-md5", "2", "")
	var ae *client.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, ufop.StatusExists, ae.Status)
	assert.Equal(t, `ufop "demo-md5" already exists`, err.Error())

	list, err := c.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, "md5 of things", list[0].Description)

	v1 := upload(t, c, "demo-md5", "./app")
	v2 := upload(t, c, "demo-md5", "fail")
	assert.Equal(t, []int{1, 2}, []int{v1, v2})
	ver, err := c.Version(ctx, "demo-md5", 2)
	require.NoError(t, err)
	assert.Equal(t, api.StateFailed, ver.State)
	vs, err := c.Versions(ctx, "demo-md5")
	require.NoError(t, err)
	require.Len(t, vs, 2)
	assert.Equal(t, api.StateSuccess, vs[0].State)
	assert.Equal(t, "v of ./app", vs[0].Description)

	_, err = c.Chver(ctx, "demo-md5", 2)
	assert.True(t, client.IsStatus(err, http.StatusBadRequest), "%v", err)
	rec, err = c.Chver(ctx, "demo-md5", 1)
	require.NoError(t, err)
	assert.Equal(t, 1, rec.Current)

	rr, err := c.Resize(ctx, "demo-md5", 2)
	require.NoError(t, err)
	assert.Equal(t, client.ResizeResult{Resized: api.Resized{Name: "demo-md5", From: 0, To: 2, Version: 1}, Started: true}, *rr)
	require.Eventually(t, func() bool {
		st, err := c.State(ctx, "demo-md5")
		require.NoError(t, err)
		return st.Operation != nil && st.Operation.Done && len(st.Instances) == 2
	}, time.Minute, 50*time.Millisecond)

	var logs strings.Builder
	require.NoError(t, c.Logs(ctx, "demo-md5", 1, false, &logs))
	assert.Equal(t, "demo-md5 instance 1 version 1: listening on :9100\n", logs.String())
	err = c.Logs(ctx, "demo-md5", 7, false, &logs)
	assert.True(t, client.IsStatus(err, http.StatusNotFound), "%v", err)

	up, err := c.Upgrade(ctx, "demo-md5")
	require.NoError(t, err)
	assert.False(t, up.Started)
	assert.Contains(t, up.Message, "already running")

	un, err := c.Unregister(ctx, "demo-md5")
	require.NoError(t, err)
	assert.True(t, un.Deleted)
	assert.Equal(t, []string{"127.0.0.1:5000/" + clienttest.User + "/demo-md5:v1"}, un.Removed, "the failed build left nothing")
	_, err = c.Info(ctx, "demo-md5")
	assert.True(t, client.IsStatus(err, http.StatusNotFound), "%v", err)
	assert.Equal(t, `no such ufop "demo-md5"`, err.Error())
}

func TestClientErrors(t *testing.T) {
	srv := clienttest.Start(t)
	ctx := context.Background()

	bad := client.New(srv.URL, auth.Credentials{AccessKey: srv.Creds.AccessKey, SecretKey: "wrong"})
	_, err := bad.WhoAmI(ctx)
	assert.True(t, client.IsStatus(err, http.StatusUnauthorized), "%v", err)
	assert.Contains(t, err.Error(), "bad access key or signature")

	c := client.New(srv.URL+"/", srv.Creds)
	_, err = c.Register(ctx, "demo", "3", "")
	assert.True(t, client.IsStatus(err, http.StatusBadRequest), "%v", err)
	assert.Contains(t, err.Error(), "access mode")

	// A body that does not match its signed SHA-256 is refused.
	_, err = c.Register(ctx, "demo", "", "")
	require.NoError(t, err)
	tb := tarball(t, map[string]string{"ufop.yaml": "image: ubuntu\nrun: x\n"})
	_, err = c.Upload(ctx, "demo", "", bytes.NewReader(tb), int64(len(tb)), sum([]byte("other")))
	assert.True(t, client.IsStatus(err, http.StatusBadRequest), "%v", err)
	assert.Contains(t, err.Error(), "corrupted")

	// No ufop.yaml.
	tb = tarball(t, map[string]string{"app": "x"})
	_, err = c.Upload(ctx, "demo", "", bytes.NewReader(tb), int64(len(tb)), sum(tb))
	assert.Contains(t, err.Error(), "no ufop.yaml")

	_, err = client.New("ftp://x", srv.Creds).List(ctx)
	assert.ErrorContains(t, err, "bad API address")
	_, err = client.New("127.0.0.1:1", srv.Creds).List(ctx)
	assert.ErrorContains(t, err, "cannot reach the qufop API at 127.0.0.1:1")
}

func TestAPIErrorMessage(t *testing.T) {
	assert.Equal(t, "boom (HTTP 500)", (&client.APIError{Status: 500, Msg: "boom"}).Error())
	assert.Equal(t, "HTTP 502 Bad Gateway", (&client.APIError{Status: 502}).Error())
	assert.Equal(t, "no such ufop", (&client.APIError{Status: 404, Msg: "no such ufop"}).Error())
}

// unreg keeps the builds another UFOP of the owner builds on.
func TestUnregisterKeepsBases(t *testing.T) {
	srv := clienttest.Start(t)
	ctx := context.Background()
	c := client.New(srv.URL, srv.Creds)
	for _, name := range []string{"base-ufop", "child-ufop"} {
		_, err := c.Register(ctx, name, "2", "")
		require.NoError(t, err)
	}
	upload(t, c, "base-ufop", "./app")
	upload(t, c, "base-ufop", "./app")
	tb := tarball(t, map[string]string{"ufop.yaml": "image: base-ufop.v2\nrun: ./app\n", "app": "#!/bin/sh\n"})
	n, err := c.Upload(ctx, "child-ufop", "", bytes.NewReader(tb), int64(len(tb)), "")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		v, err := c.Version(ctx, "child-ufop", n)
		return err == nil && v.State != api.StateBuilding
	}, time.Minute, 20*time.Millisecond)

	un, err := c.Unregister(ctx, "base-ufop")
	require.NoError(t, err)
	prefix := "127.0.0.1:5000/" + clienttest.User + "/base-ufop:"
	assert.Equal(t, []string{prefix + "v1"}, un.Removed)
	assert.Equal(t, []api.Kept{{Artifact: prefix + "v2", Reason: "the base of child-ufop version 1"}}, un.Kept)
}
