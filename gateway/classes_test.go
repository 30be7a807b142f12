package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/storage"
	"github.com/qufop/qufop/storage/local"
	"github.com/qufop/qufop/tenant"
)

// turnstile is a built-in command that announces the tenant of each step
// and holds its worker until one release lets exactly one step go.
type turnstile struct {
	entered chan string
	release chan struct{}
}

func (g *turnstile) Process(ctx context.Context, _ fop.Cmd, in fop.Blob) (fop.Blob, error) {
	g.entered <- tenant.From(ctx).User
	<-g.release
	return fop.Blob{Data: in.Data, MIME: "text/plain"}, nil
}

// classServer serves bucket "freeb" of bob (free) and "paidb" of alice
// (paid) on one worker.
func classServer(t *testing.T, mod func(*Config)) (*Server, *turnstile) {
	t.Helper()
	var bs []storage.Bucket
	for _, name := range []string{"freeb", "paidb"} {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "x.txt"), []byte("x"), 0o644))
		b, err := local.New(name, dir)
		require.NoError(t, err)
		bs = append(bs, b)
	}
	set, err := storage.NewSet(bs...)
	require.NoError(t, err)
	var keys auth.Users
	cfg := NewDefaultConfig()
	cfg.Workers, cfg.QueueSize = 1, 8
	if mod != nil {
		mod(&cfg)
	}
	g := &turnstile{entered: make(chan string, 16), release: make(chan struct{})}
	srv, err := New(cfg, set, fop.Registry{"turn": g}, nil,
		WithAccess(records{"freeb": {Owner: "bob"}, "paidb": {Owner: "alice"}}, keys.Lookup, "admin"),
		WithClasses(classes{"alice": tenant.Paid}))
	require.NoError(t, err)
	return srv, g
}

func serveAsync(srv *Server, target string) chan *httptest.ResponseRecorder {
	ch := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
		ch <- w
	}()
	return ch
}

// Through the handler: the tenant the gateway gives a request (its bucket's
// owner, with the owner's class) decides its queue, so a paid request that
// arrives after free ones gets the next worker.
func TestPaidRequestOvertakesFreeOnes(t *testing.T) {
	srv, g := classServer(t, nil)
	var replies []chan *httptest.ResponseRecorder
	replies = append(replies, serveAsync(srv, "/freeb/x.txt?turn"))
	require.Equal(t, "bob", <-g.entered)
	for i := range 2 {
		replies = append(replies, serveAsync(srv, "/freeb/x.txt?turn"))
		waitUntil(t, "free queued", func() bool { return srv.pool.WaitingClass(tenant.Free) == i+1 })
	}
	replies = append(replies, serveAsync(srv, "/paidb/x.txt?turn"))
	waitUntil(t, "paid queued", func() bool { return srv.pool.WaitingClass(tenant.Paid) == 1 })

	var order []string
	for range 3 {
		g.release <- struct{}{}
		order = append(order, <-g.entered)
	}
	g.release <- struct{}{}
	assert.Equal(t, []string{"alice", "bob", "bob"}, order)
	for _, r := range replies {
		assert.Equal(t, http.StatusOK, (<-r).Code)
	}
}

// A full free queue answers free requests 503 in Qiniu's form, naming the
// class, while a paid request still queues and is served.
func TestFreeQueueFullPaidQueues(t *testing.T) {
	srv, g := classServer(t, func(c *Config) { c.QueueSize, c.QueueSizePaid = 1, 4 })
	first := serveAsync(srv, "/freeb/x.txt?turn")
	<-g.entered
	queued := serveAsync(srv, "/freeb/x.txt?turn")
	waitUntil(t, "free queued", func() bool { return srv.pool.WaitingClass(tenant.Free) == 1 })

	w := <-serveAsync(srv, "/freeb/x.txt?turn")
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, "server busy: the free queue is full (1 waiting), retry later", decodeError(t, w).Error)

	var paid []chan *httptest.ResponseRecorder
	for i := range 2 {
		paid = append(paid, serveAsync(srv, "/paidb/x.txt?turn"))
		waitUntil(t, "paid queued", func() bool { return srv.pool.WaitingClass(tenant.Paid) == i+1 })
	}
	var order []string
	for range 3 {
		g.release <- struct{}{}
		order = append(order, <-g.entered)
	}
	g.release <- struct{}{}
	assert.Equal(t, []string{"alice", "alice", "bob"}, order)
	for _, r := range append([]chan *httptest.ResponseRecorder{first, queued}, paid...) {
		assert.Equal(t, http.StatusOK, (<-r).Code)
	}
}
