package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/cluster/consul/consulfake"
	"github.com/qufop/qufop/cluster/nomad/nomadfake"
	"github.com/qufop/qufop/internal/dockertest"
	"github.com/qufop/qufop/internal/testutil"
)

// runAsQufop is set in the environment of this test binary when
// qufopProcess starts it as the qufop command.
const runAsQufop = "QUFOP_CLI_TEST_RUN_AS_QUFOP"

// TestMain is the qufop command when this test binary is started by
// qufopProcess, so the whole output of a real process (anything written to
// stdout or stderr, by any package) is captured; otherwise it runs the
// tests.
func TestMain(m *testing.M) {
	if os.Getenv(runAsQufop) != "1" {
		os.Exit(m.Run())
	}
	var args []string
	if err := json.Unmarshal([]byte(os.Getenv(runAsQufop+"_ARGS")), &args); err != nil {
		os.Stderr.WriteString("qufop test process: " + err.Error() + "\n")
		os.Exit(2)
	}
	root := NewRoot()
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		os.Stderr.WriteString("qufop: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Exit(0)
}

// qufopProcess starts `qufop args...` as a process of its own with env
// (and none of this process's QUFOP_* variables); all its output goes to
// out.
func qufopProcess(t *testing.T, out *testutil.SyncBuffer, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "QUFOP_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	argv, err := json.Marshal(args)
	require.NoError(t, err)
	cmd.Env = append(cmd.Env, runAsQufop+"=1", runAsQufop+"_ARGS="+string(argv))
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// TestBuilderSecretStaysInItsFile runs `qufop builder` (a real process, on
// the Nomad and Consul fakes and this machine's Docker daemon) with
// generated keys and with keys from the environment, calls it with them
// (so that it logs requests), stops it, and greps everything it wrote: the
// secret key is in no line of it, and a generated one is in <data>/admin.json
// (mode 0600).
func TestBuilderSecretStaysInItsFile(t *testing.T) {
	dockertest.Client(t)
	registry := dockertest.Registry(t)
	nf := nomadfake.New()
	t.Cleanup(nf.Close)
	cf := consulfake.New()
	t.Cleanup(cf.Close)
	given := auth.NewCredentials()
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"generated", nil},
		{"from the environment", []string{envAccessKey + "=" + given.AccessKey, envSecretKey + "=" + given.SecretKey}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			addr := freeAddr(t)
			out := &testutil.SyncBuffer{}
			cmd := qufopProcess(t, out, tc.env, "builder", "--listen", addr, "--data", data,
				"--nomad-addr", nf.URL(), "--consul-addr", cf.Addr(), "--registry", registry)
			require.Eventually(t, func() bool {
				r, err := http.Get("http://" + addr + "/health")
				if err == nil {
					r.Body.Close()
				}
				return err == nil
			}, 2*time.Minute, 50*time.Millisecond, "%s", out)

			creds := given
			if tc.env == nil {
				path := filepath.Join(data, "admin.json")
				fi, err := os.Stat(path)
				require.NoError(t, err)
				assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
				b, err := os.ReadFile(path)
				require.NoError(t, err)
				require.NoError(t, json.Unmarshal(b, &creds))
				require.NotEmpty(t, creds.SecretKey)
				assert.Contains(t, out.String(), path, "the output says where the keys are")
			} else {
				_, err := os.Stat(filepath.Join(data, "admin.json"))
				assert.ErrorIs(t, err, os.ErrNotExist, "keys from the environment are not written down")
			}
			// Calls that log: a good one, and one with a wrong secret.
			c := client.New(addr, creds)
			user, err := c.WhoAmI(context.Background())
			require.NoError(t, err)
			assert.Equal(t, "admin", user)
			_, err = client.New(addr, auth.Credentials{AccessKey: creds.AccessKey, SecretKey: "wrong"}).List(context.Background())
			assert.True(t, client.IsStatus(err, 401), "%v", err)

			require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
			require.NoError(t, cmd.Wait(), "%s", out)
			logs := out.String()
			assert.Contains(t, logs, "qufop builder listening")
			assert.False(t, bytes.Contains([]byte(logs), []byte(creds.SecretKey)), "the secret key is in the output:\n%s", logs)
		})
	}
}

// TestKeyFlagsRefused: keys on a command line are refused with what to do.
func TestKeyFlagsRefused(t *testing.T) {
	for _, args := range [][]string{
		{"builder", "--secret-key", "s3cret", "--access-key", "AK"},
		{"dev", "--access-key", "AK", "--secret-key", "s3cret"},
	} {
		root := NewRoot()
		out := &testutil.SyncBuffer{}
		root.SetOut(out)
		root.SetErr(out)
		root.SetArgs(append(args, "--data", t.TempDir(), "--listen", freeAddr(t)))
		// A command that took the flags would serve until the context
		// ends: the deadline is only a safety net.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := root.ExecuteContext(ctx)
		cancel()
		require.Error(t, err, "%v", args)
		assert.Contains(t, err.Error(), "set QUFOP_ACCESS_KEY and QUFOP_SECRET_KEY in the environment")
	}
}
