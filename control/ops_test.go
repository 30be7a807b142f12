package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/client/clienttest"
	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/cluster/consul"
	"github.com/qufop/qufop/cluster/consul/consulfake"
	"github.com/qufop/qufop/cluster/local"
	"github.com/qufop/qufop/control"
	"github.com/qufop/qufop/ufop"
)

// These tests run two control processes' worth of control.Server on one
// KV and one orchestrator, as `qufop control` runs on Nomad (several
// processes on one Consul), and interleave their operations on one UFOP.

// proc is one control process: its own server, HTTP listener and client,
// over a KV shared with the other process.
type proc struct {
	srv *control.Server
	c   *client.Client
	kv  *gateKV
}

// startProc runs a control.Server over kv and orch until the test ends;
// cfg (may be nil) changes its configuration.
func startProc(t *testing.T, kv cluster.KV, orch cluster.Orchestrator, users *auth.Users, creds auth.Credentials,
	cfg func(*control.Config), log *slog.Logger) *proc {
	t.Helper()
	gin.SetMode(gin.TestMode)
	c := control.NewDefaultConfig()
	c.WorkDir = t.TempDir()
	c.DeployTimeout = time.Minute
	if cfg != nil {
		cfg(&c)
	}
	g := &gateKV{KV: kv}
	srv := control.New(c, ufop.NewKeeper(g), clienttest.Builder{}, clienttest.NewBuildLogs(), orch, users.Lookup, log)
	e := gin.New()
	srv.Mount(e)
	ts := httptest.NewServer(e)
	t.Cleanup(func() {
		g.release()
		ts.Close()
		srv.Close()
	})
	return &proc{srv: srv, c: client.New(ts.URL, creds), kv: g}
}

// twoProcs starts two control processes on kv and one fake orchestrator.
func twoProcs(t *testing.T, kv cluster.KV, cfgA func(*control.Config), logA *slog.Logger) (a, b *proc, orch *clienttest.Orchestrator) {
	t.Helper()
	creds := auth.NewCredentials()
	users := &auth.Users{}
	users.Add(clienttest.User, creds)
	orch = clienttest.NewOrchestrator(10 * time.Millisecond)
	a = startProc(t, kv, orch, users, creds, cfgA, logA)
	b = startProc(t, kv, orch, users, creds, nil, nil)
	return a, b, orch
}

// gateKV passes calls to KV until a CAS that arm accepts has succeeded;
// from then on every call waits until release, so that the test can run
// the other process while this one is between two steps of an operation.
type gateKV struct {
	cluster.KV
	arm func(key string, val []byte) bool

	mu     sync.Mutex
	closed chan struct{} // non-nil: the gate is shut until it is closed
	once   sync.Once
}

func (g *gateKV) wait(ctx context.Context) error {
	g.mu.Lock()
	ch := g.closed
	g.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gateKV) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed == nil {
		g.closed = make(chan struct{})
	}
}

// shutAt reports whether the gate was shut.
func (g *gateKV) isShut() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed != nil
}

func (g *gateKV) release() {
	g.mu.Lock()
	ch := g.closed
	g.mu.Unlock()
	if ch != nil {
		g.once.Do(func() { close(ch) })
	}
}

func (g *gateKV) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	if err := g.wait(ctx); err != nil {
		return nil, 0, err
	}
	return g.KV.Get(ctx, key)
}

func (g *gateKV) CAS(ctx context.Context, key string, val []byte, index uint64) (bool, error) {
	if err := g.wait(ctx); err != nil {
		return false, err
	}
	ok, err := g.KV.CAS(ctx, key, val, index)
	if ok && err == nil && g.arm != nil && g.arm(key, val) {
		g.shut()
	}
	return ok, err
}

func (g *gateKV) List(ctx context.Context, prefix string) ([]cluster.Pair, error) {
	if err := g.wait(ctx); err != nil {
		return nil, err
	}
	return g.KV.List(ctx, prefix)
}

func (g *gateKV) Delete(ctx context.Context, key string) error {
	if err := g.wait(ctx); err != nil {
		return err
	}
	return g.KV.Delete(ctx, key)
}

// storedOp is the operation kept in the record of name in kv, as stored.
type storedOp struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Owner   string    `json:"owner"`
	Done    bool      `json:"done"`
	Expires time.Time `json:"expires"`
}

func readStoredOp(t *testing.T, kv cluster.KV, name string) *storedOp {
	t.Helper()
	b, _, err := kv.Get(context.Background(), ufop.KeyPrefix+name)
	require.NoError(t, err)
	var rec struct {
		Op *storedOp `json:"operation"`
	}
	require.NoError(t, json.Unmarshal(b, &rec))
	return rec.Op
}

// setStoredOp writes op (raw JSON) into the record of name, as another
// control process would have.
func setStoredOp(t *testing.T, kv cluster.KV, name string, op map[string]any) {
	t.Helper()
	ctx := context.Background()
	b, idx, err := kv.Get(ctx, ufop.KeyPrefix+name)
	require.NoError(t, err)
	var rec map[string]any
	require.NoError(t, json.Unmarshal(b, &rec))
	rec["operation"] = op
	b, err = json.Marshal(rec)
	require.NoError(t, err)
	ok, err := kv.CAS(ctx, ufop.KeyPrefix+name, b, idx)
	require.NoError(t, err)
	require.True(t, ok)
}

// sharedKVs are the KVs two control processes can share: the Consul KV
// (`qufop control` on Nomad, here on the Consul fake), the file KV of
// `qufop dev` (one process, so one *local.KV shared by both servers) and
// the in-memory KV of the tests.
func sharedKVs(t *testing.T) map[string]func(t *testing.T) (a, b cluster.KV) {
	return map[string]func(t *testing.T) (a, b cluster.KV){
		"memory": func(t *testing.T) (cluster.KV, cluster.KV) {
			kv := clienttest.NewKV()
			return kv, kv
		},
		"local file": func(t *testing.T) (cluster.KV, cluster.KV) {
			kv, err := local.NewKV(filepath.Join(t.TempDir(), "kv.json"))
			require.NoError(t, err)
			return kv, kv
		},
		"consul": func(t *testing.T) (cluster.KV, cluster.KV) {
			s := consulfake.New()
			t.Cleanup(s.Close)
			// Two clients, as two processes have.
			kv := func() cluster.KV {
				c, err := consulapi.NewClient(&consulapi.Config{Address: s.Addr(), Scheme: "http"})
				require.NoError(t, err)
				return consul.NewKV(c, consul.DefaultPrefix)
			}
			return kv(), kv()
		},
	}
}

// A resize runs on one process, its deployment in flight; the other
// process refuses to unregister the UFOP (or to start another operation)
// until it ended, and once it did, unreg leaves no instance behind.
func TestOperationsSerialisedAcrossProcesses(t *testing.T) {
	for kind, kvs := range sharedKVs(t) {
		t.Run(kind, func(t *testing.T) {
			kvA, kvB := kvs(t)
			creds := auth.NewCredentials()
			users := &auth.Users{}
			users.Add(clienttest.User, creds)
			orch := clienttest.NewOrchestrator(10 * time.Millisecond)
			a := startProc(t, kvA, orch, users, creds, nil, nil)
			b := startProc(t, kvB, orch, users, creds, nil, nil)
			ctx := context.Background()
			const name = "race-unreg"
			built(t, a.c, name, true)

			release := orch.Hold()
			t.Cleanup(release)
			res, err := a.c.Resize(ctx, name, 2)
			require.NoError(t, err)
			require.True(t, res.Started)
			require.Eventually(t, func() bool { return len(orch.Calls(name)) == 1 }, time.Minute, 5*time.Millisecond,
				"the resize's deployment never started")

			// The other process sees the operation, and refuses.
			st, err := b.c.State(ctx, name)
			require.NoError(t, err)
			if assert.NotNil(t, st.Operation, "the other process does not see the resize") {
				assert.Equal(t, "resize", st.Operation.Kind)
				assert.False(t, st.Operation.Done)
			}
			_, err = b.c.Unregister(ctx, name)
			require.True(t, client.IsStatus(err, http.StatusConflict), "unreg on the other process during the resize: %v, want a 409", err)
			assert.Contains(t, err.Error(), `ufop "race-unreg": a resize is in progress; wait for it (qufop state race-unreg)`)
			_, err = b.c.Resize(ctx, name, 1)
			require.True(t, client.IsStatus(err, http.StatusConflict), "resize on the other process during the resize: %v, want a 409", err)
			_, err = b.c.Info(ctx, name)
			require.NoError(t, err, "the refused unreg deleted the record")

			release()
			assert.Empty(t, opDone(t, b.c, name), "the resize failed")
			ins, err := orch.Instances(ctx, name)
			require.NoError(t, err)
			assert.Len(t, ins, 2)

			// Once it ended, unreg goes through and nothing is left.
			_, err = b.c.Unregister(ctx, name)
			require.NoError(t, err)
			_, err = orch.Instances(ctx, name)
			assert.True(t, errors.Is(err, cluster.ErrNotFound), "instances of the unregistered ufop: %v", err)
			_, err = a.c.Info(ctx, name)
			assert.True(t, client.IsStatus(err, http.StatusNotFound), "%v", err)
		})
	}
}

// endLog reports the "resize ended" log lines of a server.
type endLog struct {
	slog.Handler
	ended chan slog.Record
}

func (h endLog) Enabled(context.Context, slog.Level) bool { return true }

func (h endLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "resize ended" {
		h.ended <- r
	}
	return nil
}

func (h endLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h endLog) WithGroup(string) slog.Handler      { return h }

func attr(r slog.Record, key string) string {
	var out string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			out = a.Value.String()
			return false
		}
		return true
	})
	return out
}

// A resize took the operation record, then its process stalled before it
// deployed (here: its KV calls wait) for longer than its lease; the other
// process took the stale record over and unregistered the UFOP. When the
// stalled process goes on, it finds the record gone and deploys nothing:
// the purge that won the race is not undone.
func TestStalledResizeDoesNotUndoAnUnreg(t *testing.T) {
	for kind, kvs := range sharedKVs(t) {
		t.Run(kind, func(t *testing.T) {
			kvA, kvB := kvs(t)
			creds := auth.NewCredentials()
			users := &auth.Users{}
			users.Add(clienttest.User, creds)
			orch := clienttest.NewOrchestrator(10 * time.Millisecond)
			ended := make(chan slog.Record, 16)
			const lease = 50 * time.Millisecond
			a := startProc(t, kvA, orch, users, creds, func(c *control.Config) { c.OpLease = lease },
				slog.New(endLog{ended: ended}))
			b := startProc(t, kvB, orch, users, creds, nil, nil)
			ctx := context.Background()
			const name = "race-stalled"
			built(t, a.c, name, true)

			// A's KV calls wait from the moment its resize holds the record.
			a.kv.arm = func(key string, val []byte) bool {
				return key == ufop.KeyPrefix+name && strings.Contains(string(val), `"kind":"resize"`)
			}
			res, err := a.c.Resize(ctx, name, 2)
			require.NoError(t, err)
			require.True(t, res.Started)
			require.True(t, a.kv.isShut(), "the resize answered without an operation record in the KV")
			op := readStoredOp(t, kvB, name)
			require.NotNil(t, op, "no operation in the record")
			require.Equal(t, "resize", op.Kind)

			// B refuses while the lease runs, then takes the record over.
			deadline := op.Expires
			var uerr error
			require.Eventually(t, func() bool {
				_, uerr = b.c.Unregister(ctx, name)
				return uerr == nil
			}, time.Minute, 5*time.Millisecond, "unreg never took the stale resize over: %v", uerr)
			require.False(t, time.Now().Before(deadline), "unreg went through before the resize's lease ran out")
			_, err = b.c.Info(ctx, name)
			require.True(t, client.IsStatus(err, http.StatusNotFound), "%v", err)

			a.kv.release()
			var r slog.Record
			select {
			case r = <-ended:
			case <-time.After(time.Minute):
				t.Fatal("the stalled resize never ended")
			}
			assert.Contains(t, attr(r, "err"), "gone", "the stalled resize's end")
			for _, c := range orch.Calls(name) {
				assert.NotEqual(t, "deploy", c.Op, "the stalled resize deployed the unregistered ufop: %+v", c)
			}
			_, err = orch.Instances(ctx, name)
			assert.True(t, errors.Is(err, cluster.ErrNotFound), "instances of the unregistered ufop: %v", err)
		})
	}
}

// An operation record left by another process is obeyed while its lease
// runs, and taken over once it ran out (its process died); state shows
// what is in the record, whichever process wrote it.
func TestStaleOperationIsTakenOver(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC()
	for _, tc := range []struct {
		name      string
		op        map[string]any
		wantState string // the state's view of it: running, done, abandoned
		refused   bool   // a resize and an unreg get a 409
	}{
		{
			name: "running on another process",
			op: map[string]any{"id": "op-1", "kind": "upgrade", "version": 1, "count": 1, "owner": "host-b/4242/x",
				"started": now.Add(-time.Second), "expires": now.Add(time.Hour)},
			wantState: "running", refused: true,
		},
		{
			name: "owner died: lease ran out",
			op: map[string]any{"id": "op-2", "kind": "upgrade", "version": 1, "count": 1, "owner": "host-b/4242/x",
				"started": now.Add(-time.Hour), "expires": now.Add(-time.Minute)},
			wantState: "abandoned",
		},
		{
			name: "ended",
			op: map[string]any{"id": "op-3", "kind": "upgrade", "version": 1, "count": 1, "owner": "host-b/4242/x",
				"started": now.Add(-time.Hour), "expires": now.Add(time.Hour), "done": true, "finished": now.Add(-time.Minute)},
			wantState: "done",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kv := clienttest.NewKV()
			a, _, orch := twoProcs(t, kv, nil, nil)
			name := "stale-" + strings.ReplaceAll(strings.Fields(tc.name)[0], ":", "")
			built(t, a.c, name, true)
			setStoredOp(t, kv, name, tc.op)

			st, err := a.c.State(ctx, name)
			require.NoError(t, err)
			require.NotNil(t, st.Operation, "state does not show the operation in the record")
			assert.Equal(t, "upgrade", st.Operation.Kind)
			switch tc.wantState {
			case "running":
				assert.False(t, st.Operation.Done)
			case "done":
				assert.True(t, st.Operation.Done)
				assert.Empty(t, st.Operation.Error)
			case "abandoned":
				assert.True(t, st.Operation.Done)
				assert.Contains(t, st.Operation.Error, "abandoned")
			}

			_, rerr := a.c.Resize(ctx, name, 1)
			_, uerr := a.c.Unregister(ctx, name)
			if tc.refused {
				require.True(t, client.IsStatus(rerr, http.StatusConflict), "resize: %v, want a 409", rerr)
				assert.Contains(t, rerr.Error(), "an upgrade is in progress")
				require.True(t, client.IsStatus(uerr, http.StatusConflict), "unreg: %v, want a 409", uerr)
				assert.Empty(t, orch.Calls(name))
				return
			}
			require.NoError(t, rerr)
			// The unreg came while the resize ran, or after it.
			if uerr != nil {
				require.True(t, client.IsStatus(uerr, http.StatusConflict), "unreg: %v", uerr)
				assert.Contains(t, uerr.Error(), "a resize is in progress")
				assert.Empty(t, opDone(t, a.c, name))
				_, uerr = a.c.Unregister(ctx, name)
			}
			require.NoError(t, uerr)
			_, err = orch.Instances(ctx, name)
			assert.True(t, errors.Is(err, cluster.ErrNotFound), "instances of the unregistered ufop: %v", err)
		})
	}
}

// The process running an operation renews its lease while it runs: an
// operation longer than the lease is not taken for abandoned.
func TestOperationLeaseRenewedWhileItRuns(t *testing.T) {
	kv := clienttest.NewKV()
	// Renewed every second; the test waits past the first lease only.
	const lease = 3 * time.Second
	a, b, orch := twoProcs(t, kv, func(c *control.Config) { c.OpLease = lease }, nil)
	ctx := context.Background()
	const name = "long-resize"
	built(t, a.c, name, true)
	release := orch.Hold()
	t.Cleanup(release)
	_, err := a.c.Resize(ctx, name, 1)
	require.NoError(t, err)
	first := readStoredOp(t, kv, name)
	require.NotNil(t, first)

	require.Eventually(t, func() bool { return time.Now().After(first.Expires) }, time.Minute, 10*time.Millisecond)
	now := readStoredOp(t, kv, name)
	assert.Equal(t, first.ID, now.ID)
	assert.True(t, now.Expires.After(first.Expires), "the lease was not renewed: %v, first %v", now.Expires, first.Expires)
	_, err = b.c.Unregister(ctx, name)
	require.True(t, client.IsStatus(err, http.StatusConflict), "unreg past the first lease of a running resize: %v, want a 409", err)

	release()
	assert.Empty(t, opDone(t, b.c, name))
	assert.True(t, readStoredOp(t, kv, name).Done)
}
