package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/ufop"
)

type records map[string]*ufop.Record

func (r records) Get(_ context.Context, name string) (*ufop.Record, error) {
	if rec, ok := r[name]; ok {
		return rec, nil
	}
	return nil, errs.Wrap(404, ufop.ErrNoSuchUFOP, "no such ufop")
}

type catalog struct {
	mu  sync.Mutex
	eps map[string][]cluster.Endpoint
}

func (c *catalog) Healthy(name string) []cluster.Endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.eps[name]
}

func (c *catalog) set(name string, eps ...cluster.Endpoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.eps[name] = eps
}

func rec(name string, mode ufop.Mode, proto ufop.Protocol, conc int) *ufop.Record {
	return &ufop.Record{Name: name, Owner: "alice", Mode: mode, Deployed: 1, Versions: []ufop.Version{{
		N: 1, State: ufop.BuildSuccess,
		Spec: &ufop.Spec{Protocol: proto, Concurrency: conc, Timeout: 5 * time.Second},
	}}}
}

// instance is a UFOP speaking both protocols: it upper-cases its input and
// can be told to block.
type instance struct {
	srv     *httptest.Server
	calls   atomic.Int32
	block   chan struct{}
	entered chan struct{}
	lastCmd atomic.Value
}

func newInstance(t *testing.T) *instance {
	in := &instance{entered: make(chan struct{}, 64)}
	in.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in.calls.Add(1)
		in.entered <- struct{}{}
		if in.block != nil {
			<-in.block
		}
		var data []byte
		switch r.URL.Path {
		case "/handler":
			in.lastCmd.Store(r.URL.Query().Get("cmd"))
			data, _ = io.ReadAll(r.Body)
		case "/uop":
			var req ufop.UOPRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				http.Error(w, `{"error":"bad json"}`, 500)
				return
			}
			in.lastCmd.Store(req.Cmd)
			resp, err := http.Get(req.Src.URL)
			if err != nil {
				http.Error(w, `{"error":"fetch failed"}`, 502)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				http.Error(w, `{"error":"fetch status `+resp.Status+`"}`, 502)
				return
			}
			data, _ = io.ReadAll(resp.Body)
		}
		if strings.Contains(in.lastCmd.Load().(string), "/fail") {
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"bad sub-command fail"}`))
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write(bytes.ToUpper(data))
	}))
	t.Cleanup(in.srv.Close)
	return in
}

func (in *instance) endpoint(id string) cluster.Endpoint {
	return cluster.Endpoint{ID: id, Addr: strings.TrimPrefix(in.srv.URL, "http://"), Version: 1}
}

func cmd(raw string) fop.Cmd {
	ch, err := fop.Parse(raw)
	if err != nil {
		panic(err)
	}
	return ch.Cmds[0]
}

func TestHandlerAndUOP(t *testing.T) {
	inst := newInstance(t)
	cat := &catalog{eps: map[string][]cluster.Endpoint{}}
	cat.set("up-h", inst.endpoint("a"))
	cat.set("up-u", inst.endpoint("a"))
	d := New(NewDefaultConfig(), records{
		"up-h": rec("up-h", ufop.Public, ufop.ProtocolHandler, 2),
		"up-u": rec("up-u", ufop.Public, ufop.ProtocolUOP, 2),
	}, cat, nil)

	// Blobs are served by a gateway route; here a gin engine of its own.
	e := gin.New()
	e.GET(BlobPath+":token", d.Blobs().Handler)
	blobSrv := httptest.NewServer(e)
	defer blobSrv.Close()
	d.SetBlobBase(blobSrv.URL)

	for _, name := range []string{"up-h", "up-u"} {
		p, err := d.Resolve(context.Background(), cmd(name+"/x"), "bob")
		require.NoError(t, err)
		require.NotNil(t, p)
		out, err := p.Process(context.Background(), cmd(name+"/x/y"), fop.Blob{Data: []byte("hello"), MIME: "text/plain", Bucket: "b", Key: "k"})
		require.NoError(t, err, name)
		assert.Equal(t, "HELLO", string(out.Data))
		assert.Equal(t, name+"/x/y", inst.lastCmd.Load(), "cmd includes the UFOP name")
	}
	assert.Equal(t, 0, d.Blobs().Len(), "blobs are removed after the step")

	// The UFOP's own error comes back as a 599 with its message.
	p, _ := d.Resolve(context.Background(), cmd("up-h/fail"), "")
	_, err := p.Process(context.Background(), cmd("up-h/fail"), fop.Blob{Data: []byte("x")})
	require.Error(t, err)
	assert.Equal(t, 599, errs.Status(err))
	assert.Contains(t, errs.Public(err), "bad sub-command fail")
}

func TestResolve(t *testing.T) {
	d := New(NewDefaultConfig(), records{
		"priv": rec("priv", ufop.Private, ufop.ProtocolHandler, 1),
	}, &catalog{eps: map[string][]cluster.Endpoint{}}, nil)
	p, err := d.Resolve(context.Background(), cmd("nosuch/x"), "alice")
	assert.NoError(t, err)
	assert.Nil(t, p, "not a UFOP")
	_, err = d.Resolve(context.Background(), cmd("priv/x"), "bob")
	assert.Equal(t, 403, errs.Status(err))
	p, err = d.Resolve(context.Background(), cmd("priv/x"), "alice")
	require.NoError(t, err)

	_, err = p.Process(context.Background(), cmd("priv/x"), fop.Blob{Data: []byte("x")})
	assert.Equal(t, 503, errs.Status(err))
	assert.Contains(t, errs.Public(err), "no healthy instance")
}

func TestConcurrencyAndQueue(t *testing.T) {
	inst := newInstance(t)
	inst.block = make(chan struct{})
	cat := &catalog{eps: map[string][]cluster.Endpoint{}}
	cat.set("que", inst.endpoint("a"), inst.endpoint("b"))
	cfg := NewDefaultConfig()
	cfg.QueueSize = 2
	d := New(cfg, records{"que": rec("que", ufop.Public, ufop.ProtocolHandler, 1)}, cat, nil)
	p, err := d.Resolve(context.Background(), cmd("que/x"), "")
	require.NoError(t, err)

	results := make(chan error, 4)
	call := func() {
		_, err := p.Process(context.Background(), cmd("que/x"), fop.Blob{Data: []byte("x")})
		results <- err
	}
	// Two instances with concurrency 1: two calls run, the others wait.
	go call()
	go call()
	<-inst.entered
	<-inst.entered

	// A queued step whose deadline passes leaves with 504.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = p.Process(ctx, cmd("que/x"), fop.Blob{Data: []byte("x")})
	assert.Equal(t, 504, errs.Status(err))
	assert.Equal(t, 0, d.Waiting("que"))

	go call()
	go call()
	require.Eventually(t, func() bool { return d.Waiting("que") == 2 }, time.Minute, 5*time.Millisecond)
	// The queue (2) is full: the next is refused at once.
	_, err = p.Process(context.Background(), cmd("que/x"), fop.Blob{Data: []byte("x")})
	assert.Equal(t, 503, errs.Status(err))
	assert.Contains(t, errs.Public(err), "queue is full")

	close(inst.block)
	for range 4 {
		assert.NoError(t, <-results)
	}
	assert.EqualValues(t, 4, inst.calls.Load())
}

func TestBlobURLs(t *testing.T) {
	b := NewBlobs()
	e := gin.New()
	e.GET(BlobPath+":token", b.Handler)
	path, remove := b.Put([]byte("data"), "text/plain", time.Now().Add(time.Minute))
	get := func(p string) (int, string) {
		w := httptest.NewRecorder()
		e.ServeHTTP(w, httptest.NewRequest("GET", p, nil))
		return w.Code, w.Body.String()
	}
	code, body := get(path)
	assert.Equal(t, 200, code)
	assert.Equal(t, "data", body)
	code, _ = get(strings.Replace(path, "sign=", "sign=x", 1))
	assert.Equal(t, 403, code, "bad signature")
	code, _ = get(strings.Replace(path, "?e=", "?e=1", 1))
	assert.Equal(t, 403, code, "changed deadline")
	remove()
	code, _ = get(path)
	assert.Equal(t, 404, code, "removed")

	old, _ := b.Put([]byte("x"), "text/plain", time.Now().Add(-time.Minute))
	code, body = get(old)
	assert.Equal(t, 403, code)
	assert.Contains(t, body, "expired")
}

// countingRecords counts reads, to see the cache and its refresh.
type countingRecords struct {
	records
	gets int
}

func (c *countingRecords) Get(ctx context.Context, name string) (*ufop.Record, error) {
	c.gets++
	return c.records.Get(ctx, name)
}

func TestNewVersionRefreshesTheRecord(t *testing.T) {
	inst := newInstance(t)
	cat := &catalog{eps: map[string][]cluster.Endpoint{}}
	old := rec("upv", ufop.Public, ufop.ProtocolHandler, 2)
	recs := &countingRecords{records: records{"upv": old}}
	cfg := NewDefaultConfig()
	cfg.RecordTTL = time.Hour
	d := New(cfg, recs, cat, nil)
	p, err := d.Resolve(context.Background(), cmd("upv/x"), "")
	require.NoError(t, err)
	assert.Equal(t, 1, recs.gets)

	// Version 2 is built and deployed after the record was cached.
	v2 := *old
	v2.Versions = append(append([]ufop.Version{}, old.Versions...), ufop.Version{N: 2, State: ufop.BuildSuccess,
		Spec: &ufop.Spec{Protocol: ufop.ProtocolHandler, Concurrency: 1, Timeout: 5 * time.Second}})
	recs.records["upv"] = &v2
	ep := inst.endpoint("b")
	ep.Version = 2
	cat.set("upv", ep)
	out, err := p.Process(context.Background(), cmd("upv/x"), fop.Blob{Data: []byte("v2")})
	require.NoError(t, err)
	assert.Equal(t, "V2", string(out.Data))
	assert.Equal(t, 2, recs.gets, "the record was read again for the unknown version")
}

// Sequential steps find every instance equally idle: they go round the
// instances rather than all to the first one.
func TestEquallyBusyInstancesTakeTurns(t *testing.T) {
	a, b, c := newInstance(t), newInstance(t), newInstance(t)
	cat := &catalog{eps: map[string][]cluster.Endpoint{}}
	cat.set("rrr", a.endpoint("a"), b.endpoint("b"), c.endpoint("c"))
	d := New(NewDefaultConfig(), records{"rrr": rec("rrr", ufop.Public, ufop.ProtocolHandler, 4)}, cat, nil)
	p, err := d.Resolve(context.Background(), cmd("rrr/x"), "")
	require.NoError(t, err)
	for range 9 {
		_, err := p.Process(context.Background(), cmd("rrr/x"), fop.Blob{Data: []byte("x")})
		require.NoError(t, err)
	}
	assert.Equal(t, []int32{3, 3, 3}, []int32{a.calls.Load(), b.calls.Load(), c.calls.Load()})
}
