package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/client/clienttest"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/internal/testutil"
)

// runCLI runs qufop args (normalised as Main does) and returns its output.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runCLIContext(context.Background(), t, args...)
}

func runCLIContext(ctx context.Context, t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := NewRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(""))
	root.SetArgs(NormalizeArgs(args))
	err := root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// cliEnv points the CLI at a fresh config file with no environment
// overrides, and speeds up polling.
func cliEnv(t *testing.T) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "qufop", "config.json")
	t.Setenv(envConfig, cfg)
	t.Setenv(envAddr, "")
	t.Setenv(envAccessKey, "")
	t.Setenv(envSecretKey, "")
	old := ufopPollInterval
	ufopPollInterval = 20 * time.Millisecond
	t.Cleanup(func() { ufopPollInterval = old })
	return cfg
}

func writeApp(t *testing.T, run string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ufop.yaml"), []byte("image: ubuntu\nrun: "+run+"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "app"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "conf", "empty"), 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "conf", "app.conf"), []byte("port: 9100\n"), 0o600))
	require.NoError(t, os.Symlink("../app", filepath.Join(dir, "conf", "app-link")))
	return dir
}

func TestUfopVerbs(t *testing.T) {
	srv := clienttest.Start(t)
	cfg := cliEnv(t)

	// Not logged in.
	_, _, err := runCLI(t, "list")
	require.EqualError(t, err, "not logged in: run qufop login (or set QUFOP_ADDR, QUFOP_ACCESS_KEY, QUFOP_SECRET_KEY)")
	// No keys and no terminal.
	_, _, err = runCLI(t, "login", "--addr", srv.URL)
	require.ErrorContains(t, err, "login needs -u <access key> -p <secret key>")
	// A wrong secret is refused, and nothing is saved.
	_, _, err = runCLI(t, "login", "-u", srv.Creds.AccessKey, "-p", "wrong", "--addr", srv.URL)
	require.ErrorContains(t, err, "login failed: bad access key or signature")
	assert.NoFileExists(t, cfg)

	out, _, err := runCLI(t, "login", "-u", srv.Creds.AccessKey, "-p", srv.Creds.SecretKey, "--addr", strings.TrimPrefix(srv.URL, "http://"))
	require.NoError(t, err)
	assert.Contains(t, out, "as alice")
	fi, err := os.Stat(cfg)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	fi, err = os.Stat(filepath.Dir(cfg))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())

	// reg
	out, _, err = runCLI(t, "reg", "demo-app", "-mode=2", "-desc", "my app")
	require.NoError(t, err)
	assert.Equal(t, "Ufop name:\t demo-app\nAccess mode:\t PRIVATE\nDescription:\t my app\n", out)
	_, _, err = runCLI(t, "reg", "demo-other", "-m", "3")
	require.ErrorContains(t, err, "bad -m: access mode must be private (2) or public (1)")
	_, _, err = runCLI(t, "reg", "demo-app")
	require.EqualError(t, err, `ufop "demo-app" already exists`)
	out, _, err = runCLI(t, "reg", "demo-pub", "-m", "public")
	require.NoError(t, err)
	assert.Contains(t, out, "Access mode:\t PUBLIC")

	// list, info
	out, _, err = runCLI(t, "list")
	require.NoError(t, err)
	assert.Contains(t, out, "NAME")
	assert.Regexp(t, `demo-app\s+PRIVATE\s+-\s+0\s+my app`, out)
	out, _, err = runCLI(t, "list", "--json")
	require.NoError(t, err)
	var recs []api.UFOP
	require.NoError(t, json.Unmarshal([]byte(out), &recs))
	require.Len(t, recs, 2)
	out, _, err = runCLI(t, "info", "demo-app")
	require.NoError(t, err)
	for _, want := range []string{"Ufop name:\t demo-app\n", "Owner:\t alice\n", "Version:\t 0\n", "Access mode:\t PRIVATE\n",
		"Description:\t my app\n", "Create time:\t 20", "Instance num:\t 0\n", "Max instanceNum:\t 5\n", "Flavor:\t -\n"} {
		assert.Contains(t, out, want)
	}
	_, _, err = runCLI(t, "info", "nope-ufop")
	require.EqualError(t, err, `no such ufop "nope-ufop"`)

	// build a folder
	out, errOut, err := runCLI(t, "build", "demo-app", "-f", writeApp(t, "./app"), "-d", "first")
	require.NoError(t, err, errOut)
	assert.Contains(t, errOut, "uploading ... done")
	assert.Contains(t, out, "upload .tar succeed, version 1\n")
	assert.Contains(t, out, "step 3/3\n")
	assert.Contains(t, out, "build success: demo-app version 1")

	// build a failing tarball (.tar.gz): non-zero exit with the message
	tgz := filepath.Join(t.TempDir(), "app.tar.gz")
	var tb bytes.Buffer
	require.NoError(t, packFolder(writeApp(t, "fail"), &tb))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, err = zw.Write(tb.Bytes())
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	require.NoError(t, os.WriteFile(tgz, gz.Bytes(), 0o644))
	out, _, err = runCLI(t, "build", "demo-app", "-dir", tgz)
	require.EqualError(t, err, "build of demo-app version 2 failed: build_script step 1 exited with status 1")
	assert.Contains(t, out, "upload .tar succeed, version 2\n")
	assert.Contains(t, out, "build failed")
	// Not a tarball, no ufop.yaml.
	_, _, err = runCLI(t, "build", "demo-app", "-f", cfg)
	require.ErrorContains(t, err, "want a folder or a .tar, .tar.gz or .tgz file")
	_, _, err = runCLI(t, "build", "demo-app", "-f", t.TempDir())
	require.ErrorContains(t, err, "has no ufop.yaml at its root")

	// version / imageinfo
	out, _, err = runCLI(t, "version", "demo-app")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(out, "*********demo-app*********\nversion: 1\nstate: build success\ndescription: first\ncreateAt: 20"), out)
	assert.Contains(t, out, "\n\nversion: 2\nstate: build failed\n")
	assert.Contains(t, out, "error: build_script step 1 exited with status 1\n")
	out, _, err = runCLI(t, "imageinfo", "demo-app", "-v", "2")
	require.NoError(t, err)
	assert.NotContains(t, out, "version: 1")
	out, _, err = runCLI(t, "version", "demo-app", "--json")
	require.NoError(t, err)
	var vs []api.Version
	require.NoError(t, json.Unmarshal([]byte(out), &vs))
	require.Len(t, vs, 2)

	// chver
	_, _, err = runCLI(t, "chver", "demo-app", "-c", "2")
	require.EqualError(t, err, `version 2 of "demo-app" is "build failed": only a successful build can be chosen`)
	_, _, err = runCLI(t, "chver", "demo-app")
	require.ErrorContains(t, err, "chver needs -c N")
	out, _, err = runCLI(t, "ufopver", "demo-app", "-c", "1")
	require.NoError(t, err)
	assert.Contains(t, out, "Ufop demo-app: current version is 1.\n")
	out, _, err = runCLI(t, "info", "demo-app")
	require.NoError(t, err)
	assert.Contains(t, out, "Flavor:\t C1M1\n", "the flavor of the version's ufop.yaml (its default)")

	// resize 2: waits until both are healthy
	out, _, err = runCLI(t, "resize", "demo-app", "-num", "2")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(out, "Resize instance num from 0 to 2.\n"), out)
	assert.Contains(t, out, "instance 1\t[state] Running\t[version] 1\n")
	assert.Contains(t, out, "instance 2\t[state] Running\t[version] 1\n")
	assert.Contains(t, out, "2 instance(s) of demo-app version 1 healthy.\n")
	st, err := clientOf(t, srv).State(context.Background(), "demo-app")
	require.NoError(t, err)
	require.Len(t, st.Instances, 2)
	for _, in := range st.Instances {
		assert.True(t, in.Healthy)
	}

	// state
	out, _, err = runCLI(t, "state", "demo-app")
	require.NoError(t, err)
	assert.Contains(t, out, "Instance num:\t 2\n")
	assert.Contains(t, out, "instance 1\t[state] Running\t[version] 1\ninstance 2\t[state] Running\t[version] 1\n")
	out, _, err = runCLI(t, "state", "demo-app", "-index", "2")
	require.NoError(t, err)
	assert.Equal(t, "instance 2\t[state] Running\t[version] 1\n", out)
	out, _, err = runCLI(t, "state", "demo-app", "-range", "1:1")
	require.NoError(t, err)
	assert.Equal(t, "instance 1\t[state] Running\t[version] 1\n", out)
	out, _, err = runCLI(t, "state", "demo-app", "--range=1:9")
	require.NoError(t, err)
	assert.Equal(t, 2, strings.Count(out, "instance "))
	out, _, err = runCLI(t, "state", "demo-app", "-range", "2:2", "--json")
	require.NoError(t, err)
	var stj api.State
	require.NoError(t, json.Unmarshal([]byte(out), &stj))
	require.Len(t, stj.Instances, 1)
	assert.Equal(t, 2, stj.Instances[0].Index, "numbered from 1, as on the command line")
	for _, bad := range []string{"1-3", "3:1", "0:2", "a:b", "2"} {
		_, _, err = runCLI(t, "state", "demo-app", "-range", bad)
		require.ErrorContains(t, err, "bad -range", bad)
	}
	_, _, err = runCLI(t, "state", "demo-app", "-index", "5")
	require.EqualError(t, err, "ufop demo-app has no instance 5 (2 running; numbered from 1)")
	_, _, err = runCLI(t, "state", "demo-app", "-index", "1", "-range", "1:2")
	require.ErrorContains(t, err, "not both")

	// logs
	out, _, err = runCLI(t, "logs", "demo-app", "-index", "2")
	require.NoError(t, err)
	assert.Equal(t, "demo-app instance 2 version 1: listening on :9100\n", out, "instances are numbered from 1 in the API too")
	_, _, err = runCLI(t, "logs", "demo-app", "-index", "3")
	require.ErrorContains(t, err, "ufop demo-app has no instance 3")
	// -f follows until interrupted (the context ends): no error then.
	ctx, cancel := context.WithCancel(context.Background())
	follow := &testutil.SyncBuffer{}
	done := make(chan error, 1)
	go func() {
		root := NewRoot()
		root.SetOut(follow)
		root.SetErr(io.Discard)
		root.SetArgs(NormalizeArgs([]string{"logs", "demo-app", "-f"}))
		done <- root.ExecuteContext(ctx)
	}()
	require.Eventually(t, func() bool { return strings.Contains(follow.String(), "demo-app instance 1: request 1\n") },
		time.Minute, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	// upgrade to a new version
	out, _, err = runCLI(t, "build", "demo-app", "-f", writeApp(t, "./app --v3"))
	require.NoError(t, err)
	assert.Contains(t, out, "upload .tar succeed, version 3\n")
	_, _, err = runCLI(t, "chver", "demo-app", "-c", "3")
	require.NoError(t, err)
	out, _, err = runCLI(t, "upgrade", "demo-app")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(out, "Upgrade demo-app from version 1 to 3.\n"), out)
	assert.Contains(t, out, "instance 1\t[state] Running\t[version] 3\n")
	assert.Contains(t, out, "2 instance(s) of demo-app version 3 healthy.\n")
	out, _, err = runCLI(t, "upgrade", "demo-app")
	require.NoError(t, err)
	assert.Equal(t, "Ufop demo-app: already running the current version (version 3).\n", out)

	// resize 0, unreg
	out, _, err = runCLI(t, "resize", "demo-app", "-n", "0")
	require.NoError(t, err)
	// While the instances stop, the watch may print them once more (a loaded
	// machine polls before they are gone): only the first and last lines are fixed.
	assert.True(t, strings.HasPrefix(out, "Resize instance num from 2 to 0.\n"), out)
	assert.True(t, strings.HasSuffix(out, "\nUfop demo-app runs no instances.\n"), out)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		if line != "Ufop demo-app runs no instances." {
			assert.Regexp(t, `^instance [12]\t\[state\] \w+\t\[version\] 3$`, line)
		}
	}
	out, _, err = runCLI(t, "unreg", "demo-app")
	require.NoError(t, err)
	// Its builds go with it (version 2 failed and left none).
	assert.Equal(t, "Ufop demo-app unregistered.\nremoved 127.0.0.1:5000/alice/demo-app:v1\nremoved 127.0.0.1:5000/alice/demo-app:v3\n", out)
	_, _, err = runCLI(t, "state", "demo-app")
	require.EqualError(t, err, `no such ufop "demo-app"`)
}

func TestUfopEnvOverridesLogin(t *testing.T) {
	srv := clienttest.Start(t)
	cfg := cliEnv(t)
	// A saved login with a wrong secret, overridden by the environment.
	require.NoError(t, writeLoginConfig(cfg, loginConfig{Addr: "127.0.0.1:1", AccessKey: srv.Creds.AccessKey, SecretKey: "wrong"}))
	_, _, err := runCLI(t, "list")
	require.ErrorContains(t, err, "cannot reach the qufop API at 127.0.0.1:1")
	t.Setenv(envAddr, srv.URL)
	_, _, err = runCLI(t, "list")
	require.EqualError(t, err, "bad access key or signature")
	t.Setenv(envSecretKey, srv.Creds.SecretKey)
	out, _, err := runCLI(t, "list")
	require.NoError(t, err)
	assert.Contains(t, out, "No ufops")

	// Environment only, no file.
	t.Setenv(envConfig, filepath.Join(t.TempDir(), "none.json"))
	t.Setenv(envAccessKey, srv.Creds.AccessKey)
	_, _, err = runCLI(t, "list")
	require.NoError(t, err)
}

func TestUfopFailedDeploy(t *testing.T) {
	srv := clienttest.Start(t)
	cliEnv(t)
	t.Setenv(envAddr, srv.URL)
	t.Setenv(envAccessKey, srv.Creds.AccessKey)
	t.Setenv(envSecretKey, srv.Creds.SecretKey)
	_, _, err := runCLI(t, "reg", "demo-crash")
	require.NoError(t, err)
	_, _, err = runCLI(t, "resize", "demo-crash", "-n", "1")
	require.ErrorContains(t, err, "has no current version")
	_, _, err = runCLI(t, "build", "demo-crash", "-f", writeApp(t, "crash"))
	require.NoError(t, err)
	_, _, err = runCLI(t, "chver", "demo-crash", "-c", "1")
	require.NoError(t, err)
	out, _, err := runCLI(t, "resize", "demo-crash", "-n", "1")
	require.EqualError(t, err, "resize of demo-crash failed: instance 0 of demo-crash failed: exited with status 1")
	assert.Contains(t, out, "instance 1\t[state] Failed\t[version] 1\t[restarts] 1\texited with status 1\n")
	_, _, err = runCLI(t, "resize", "demo-crash", "-n", "-1")
	require.ErrorContains(t, err, "must not be negative")
}

func TestPackFolder(t *testing.T) {
	dir := writeApp(t, "./app")
	var b bytes.Buffer
	require.NoError(t, packFolder(dir, &b))
	tr := tar.NewReader(&b)
	got := map[string]string{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		desc := os.FileMode(hdr.Mode).Perm().String()
		if hdr.Typeflag == tar.TypeSymlink {
			desc = "-> " + hdr.Linkname
		}
		got[hdr.Name] = desc
	}
	assert.Equal(t, map[string]string{
		"ufop.yaml":     "-rw-r--r--",
		"app":           "-rwxr-xr-x",
		"conf/":         "-rwxr-x---",
		"conf/empty/":   "-rwxr-x---",
		"conf/app.conf": "-rw-------",
		"conf/app-link": "-> ../app",
	}, got)

	// Absolute symlinks inside are made relative; outside ones refused.
	require.NoError(t, os.Symlink(filepath.Join(dir, "ufop.yaml"), filepath.Join(dir, "conf", "abs")))
	b.Reset()
	require.NoError(t, packFolder(dir, &b))
	assert.Contains(t, b.String(), "../ufop.yaml")
	require.NoError(t, os.Symlink("../../etc/passwd", filepath.Join(dir, "conf", "evil")))
	err := packFolder(dir, io.Discard)
	require.ErrorContains(t, err, "cannot pack the folder: symlink conf/evil points outside it (to ../../etc/passwd)")
}

func clientOf(t *testing.T, srv *clienttest.Server) *client.Client {
	t.Helper()
	return client.New(srv.URL, srv.Creds)
}
