package cli

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/cluster/consul"
	"github.com/qufop/qufop/cluster/consul/consulfake"
	"github.com/qufop/qufop/internal/testutil"
	"github.com/qufop/qufop/ufop"
)

// `qufop gateway --consul-addr` runs UFOP steps found through Consul: the
// record in Consul KV, the healthy instance from the health endpoint.
func TestGatewayWithConsul(t *testing.T) {
	fake := consulfake.New()
	defer fake.Close()

	// An instance of UFOP "rev-demo" speaking the handler protocol.
	inst := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
			b[i], b[j] = b[j], b[i]
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write(b)
	}))
	defer inst.Close()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(inst.URL, "http://"))
	p, _ := strconv.Atoi(port)
	fake.Register("ufop-rev-demo", "rev-demo-1", host, p, []string{"v1", "ufop"})

	client, err := consulapi.NewClient(&consulapi.Config{Address: fake.Addr()})
	require.NoError(t, err)
	keeper := ufop.NewKeeper(consul.NewKV(client, consul.DefaultPrefix))
	require.NoError(t, keeper.Create(context.Background(), ufop.Record{
		Name: "rev-demo", Owner: "admin", Mode: ufop.Private, Deployed: 1, Current: 1, Desired: 1,
		Versions: []ufop.Version{{N: 1, State: ufop.BuildSuccess, Spec: &ufop.Spec{
			Protocol: ufop.ProtocolHandler, Concurrency: 4, Timeout: 5 * time.Second}}},
	}))

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "note.txt"), []byte("hello"), 0o644))
	addr := freeAddr(t)
	root := NewRoot()
	out := &testutil.SyncBuffer{}
	root.SetOut(out)
	root.SetErr(out)
	root.SetArgs([]string{"gateway", "--listen", addr, "--bucket", "files=" + dir, "--consul-addr", fake.Addr(), "--quiet"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		assert.NoError(t, <-done)
	}()
	base := "http://" + addr
	require.Eventually(t, func() bool {
		r, err := http.Get(base + "/health")
		if err == nil {
			r.Body.Close()
		}
		return err == nil
	}, time.Minute, 20*time.Millisecond, out.String())

	r, body := get(t, base+"/files/note.txt?rev-demo/x")
	assert.Equal(t, 200, r.StatusCode, string(body))
	assert.Equal(t, "olleh", string(body))

	// The instance fails its check: it leaves the view, and the step gets 503.
	fake.SetHealth("rev-demo-1", false)
	assert.Eventually(t, func() bool {
		r, _ := get(t, base+"/files/note.txt?rev-demo/x")
		return r.StatusCode == 503
	}, time.Minute, 50*time.Millisecond)

	// Without Consul, UFOP names are unknown commands.
	r, body = get(t, base+"/files/note.txt?nosuch/x")
	assert.Equal(t, 400, r.StatusCode, string(body))
}
