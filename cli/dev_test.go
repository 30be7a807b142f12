package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/qufop/qufop/internal/platformtest"
	"github.com/qufop/qufop/internal/testutil"
	"image"
	_ "image/jpeg"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// startDev runs `qufop dev args...` in-process until the returned stop is
// called; stop returns the command's error and output.
func startDev(t *testing.T, args ...string) (base string, stop func() (error, string)) {
	t.Helper()
	addr := freeAddr(t)
	root := NewRoot()
	out := &testutil.SyncBuffer{}
	root.SetOut(out)
	root.SetErr(out)
	root.SetArgs(append([]string{"dev", "--listen", addr}, args...))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	base = "http://" + addr
	require.Eventually(t, func() bool {
		select {
		case err := <-done:
			done <- err
			return true
		default:
		}
		r, err := http.Get(base + "/health")
		if err == nil {
			r.Body.Close()
		}
		return err == nil
	}, time.Minute, 20*time.Millisecond)
	return base, func() (error, string) {
		cancel()
		select {
		case err := <-done:
			return err, out.String()
		case <-time.After(time.Minute):
			t.Fatal("qufop dev did not stop")
			return nil, ""
		}
	}
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	r, err := http.Get(url)
	require.NoError(t, err)
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	require.NoError(t, err)
	return r, b
}

func TestDevServesDemoAndStopsCleanly(t *testing.T) {
	data, _ := platformtest.Data(t)
	extra := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(extra, "note.txt"), []byte("hi"), 0o644))

	base, stop := startDev(t, "--data", data, "--bucket", "extra="+extra)

	r, body := get(t, base+"/demo/sample.jpg?imageView2/2/w/200")
	require.Equal(t, 200, r.StatusCode, string(body))
	assert.Equal(t, "image/jpeg", r.Header.Get("Content-Type"))
	assert.NotEmpty(t, r.Header.Get("X-Reqid"))
	cfg, _, err := image.DecodeConfig(bytes.NewReader(body))
	require.NoError(t, err)
	assert.Equal(t, [2]int{200, 113}, [2]int{cfg.Width, cfg.Height})

	r, body = get(t, base+"/demo/sample.jpg?imageMogr2/rotate/90|imageView2/2/w/200")
	require.Equal(t, 200, r.StatusCode, string(body))
	cfg, _, err = image.DecodeConfig(bytes.NewReader(body))
	require.NoError(t, err)
	assert.Equal(t, [2]int{200, 356}, [2]int{cfg.Width, cfg.Height})

	r, body = get(t, base+"/demo/sample.jpg?imageInfo")
	require.Equal(t, 200, r.StatusCode)
	assert.Equal(t, "no-store", r.Header.Get("Cache-Control"))
	var info map[string]any
	require.NoError(t, json.Unmarshal(body, &info))
	assert.EqualValues(t, 1920, info["width"])
	assert.EqualValues(t, 1080, info["height"])

	r, body = get(t, base+"/extra/note.txt")
	assert.Equal(t, 200, r.StatusCode)
	assert.Equal(t, "hi", string(body))

	r, body = get(t, base+"/demo/sample.jpg?imageView2/9")
	assert.Equal(t, 400, r.StatusCode)
	assert.Contains(t, string(body), `"code":400`)

	err, out := stop()
	require.NoError(t, err)
	assert.Contains(t, out, base+"/demo/sample.jpg?imageView2/2/w/200")
	assert.Contains(t, out, "qufop dev stopped")
	assert.FileExists(t, filepath.Join(data, "buckets", "demo", "sample.jpg"))
}

func TestDevKeepsUserDataOnRestart(t *testing.T) {
	data, _ := platformtest.Data(t)
	_, stop := startDev(t, "--data", data)
	require.NoError(t, first(stop()))

	// The user replaced the sample: a restart must not overwrite it.
	sample := filepath.Join(data, "buckets", "demo", "sample.jpg")
	require.NoError(t, os.WriteFile(sample, []byte("mine"), 0o644))
	base, stop := startDev(t, "--data", data)
	_, body := get(t, base+"/demo/sample.jpg")
	assert.Equal(t, "mine", string(body))
	require.NoError(t, first(stop()))
}

func first(err error, _ string) error { return err }

func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"dev", "--bucket", "nodir"}, "want NAME=DIR"},
		{[]string{"dev", "--bucket", "Bad_Name=/tmp"}, "bad bucket name"},
		{[]string{"dev", "--workers", "0"}, "workers must be at least 1"},
		{[]string{"dev", "--max-output-side", "0"}, "MaxOutSide"},
		{[]string{"gateway"}, "no bucket to serve"},
		{[]string{"dev", "--listen", "127.0.0.1:99999"}, "cannot listen"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			root := NewRoot()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			data, _ := platformtest.Data(t)
			args := append(tc.args, "--data", data)
			if tc.args[0] == "gateway" {
				args = tc.args
			}
			root.SetArgs(args)
			err := root.Execute()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "\n", "one-line message")
		})
	}
}

// Two qufop dev on one data folder would both write its KV (last writer
// wins): the second refuses to start, naming the first.
func TestDevRefusesABusyDataFolder(t *testing.T) {
	data, _ := platformtest.Data(t)
	base, stop := startDev(t, "--data", data)
	root := NewRoot()
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"dev", "--data", data, "--listen", freeAddr(t)})
	err := root.Execute()
	require.Error(t, err)
	assert.Equal(t, fmt.Sprintf("data folder %s is in use by qufop dev (PID %d, on %s): stop it, or give another --data", data, os.Getpid(), base), err.Error())
	r, _ := get(t, base+"/health")
	assert.Equal(t, 200, r.StatusCode, "the first one goes on")
	require.NoError(t, first(stop()))
	// Stopped: the folder is free again.
	_, stop = startDev(t, "--data", data)
	require.NoError(t, first(stop()))
}
