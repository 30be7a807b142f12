// Package clienttest runs a real control.Server (the management API) on a
// loopback httptest server, over in-memory fakes of its dependencies, for
// the tests of package client and of the CLI verbs.
//
// The fake builder accepts any tarball with a valid ufop.yaml at its root;
// the build fails when the spec's run is "fail". The fake orchestrator's
// instances become healthy after ReadyAfter; a workload whose run is
// "crash" never does and its deployment fails. It records every Deploy and
// Scale (Calls), and can hold them (Hold) to show an operation in progress.
package clienttest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/buckets"
	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/control"
	"github.com/qufop/qufop/ufop"
	"github.com/qufop/qufop/users"
)

// User is the user of the test server whose keys are Creds.
const User = "alice"

// Admin is the test server's admin user (keys AdminCreds), who manages
// the users of its store (Users).
const Admin = "admin"

// Server is a running management API.
type Server struct {
	URL     string
	Creds   auth.Credentials
	Control *control.Server
	Orch    *Orchestrator
	HTTP    *httptest.Server
	// Keeper holds the records, for tests that set what the scaler would.
	Keeper *ufop.Keeper
	// AdminCreds are the keys of Admin; Users the user store, whose keys
	// are looked up as the platform does (users.Cache).
	AdminCreds auth.Credentials
	Users      *users.Store
}

// Start runs a server until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	gin.SetMode(gin.TestMode)
	creds := auth.NewCredentials()
	adminCreds := auth.NewCredentials()
	static := &auth.Users{}
	static.Add(User, creds)
	static.Add(Admin, adminCreds)
	cfg := control.NewDefaultConfig()
	cfg.WorkDir = t.TempDir()
	cfg.DeployTimeout = 20 * time.Second
	orch := NewOrchestrator(150 * time.Millisecond)
	kv := NewKV()
	keeper := ufop.NewKeeper(kv)
	store := users.NewStore(kv, Admin, User)
	lookup := users.NewCache(store, static.Lookup, 0, 0).Lookup
	srv := control.New(cfg, keeper, Builder{}, NewBuildLogs(), orch, lookup, nil).WithUsers(store, Admin).
		WithBuckets(buckets.NewKeeper(kv), Admin, nil)
	e := gin.New()
	srv.Mount(e)
	ts := httptest.NewServer(e)
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
	})
	return &Server{URL: ts.URL, Creds: creds, Control: srv, Orch: orch, HTTP: ts, Keeper: keeper, AdminCreds: adminCreds, Users: store}
}

// KV is an in-memory cluster.KV.
type KV struct {
	mu    sync.Mutex
	m     map[string]cluster.Pair
	index uint64
}

// NewKV returns an empty KV.
func NewKV() *KV { return &KV{m: map[string]cluster.Pair{}} }

// Get implements cluster.KV.
func (k *KV) Get(_ context.Context, key string) ([]byte, uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.m[key]
	if !ok {
		return nil, 0, fmt.Errorf("key %q: %w", key, cluster.ErrNotFound)
	}
	return bytes.Clone(p.Value), p.Index, nil
}

// CAS implements cluster.KV.
func (k *KV) CAS(_ context.Context, key string, val []byte, index uint64) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.m[key]
	if (index == 0 && ok) || (index != 0 && (!ok || p.Index != index)) {
		return false, nil
	}
	k.index++
	k.m[key] = cluster.Pair{Key: key, Value: bytes.Clone(val), Index: k.index}
	return true, nil
}

// List implements cluster.KV.
func (k *KV) List(_ context.Context, prefix string) ([]cluster.Pair, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []cluster.Pair
	for key, p := range k.m {
		if strings.HasPrefix(key, prefix) {
			p.Value = bytes.Clone(p.Value)
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements cluster.KV.
func (k *KV) Delete(_ context.Context, key string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, key)
	return nil
}

// Builder is a fake control.Builder.
type Builder struct{}

// Unpack reads a (possibly gzipped) tar into dest and parses its ufop.yaml.
func (Builder) Unpack(_ context.Context, r io.Reader, dest string) (*ufop.Spec, error) {
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, badRequest("tarball is not valid gzip: %v", err)
		}
		src = zr
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return nil, err
	}
	var spec []byte
	tr := tar.NewReader(src)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, badRequest("not a tar archive: %v", err)
		}
		name := filepath.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if name == "." {
			continue
		}
		if filepath.IsAbs(name) || strings.HasPrefix(name, "..") {
			return nil, badRequest("tarball entry %q: outside the archive", hdr.Name)
		}
		p := filepath.Join(dest, name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return nil, err
			}
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, badRequest("tarball damaged: %v", err)
			}
			if name == "ufop.yaml" {
				spec = b
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(p, b, os.FileMode(hdr.Mode)&0o777); err != nil {
				return nil, err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, p); err != nil {
				return nil, err
			}
		default:
			return nil, badRequest("tarball entry %q: unsupported type", hdr.Name)
		}
	}
	if spec == nil {
		return nil, badRequest("tarball has no ufop.yaml at its root")
	}
	return ufop.ParseSpec(spec)
}

// Build writes a few log lines and succeeds, unless the spec's run is
// "fail".
func (Builder) Build(ctx context.Context, b control.Build, log io.Writer) (control.Built, error) {
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(log, "step %d/3\n", i)
		select {
		case <-ctx.Done():
			return control.Built{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if b.Spec.Run == "fail" {
		return control.Built{}, &statusError{400, "build_script step 1 exited with status 1"}
	}
	return control.Built{Image: fmt.Sprintf("127.0.0.1:5000/%s/%s:v%d", b.Owner, b.Name, b.Version)}, nil
}

// Remove implements control.Builder: the fake's builds leave nothing to
// remove.
func (Builder) Remove(context.Context, string) error { return nil }

type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string   { return e.msg }
func (e *statusError) HTTPStatus() int { return e.status }

func badRequest(format string, a ...any) error {
	return &statusError{400, fmt.Sprintf(format, a...)}
}

// BuildLogs is an in-memory control.BuildLogs.
type BuildLogs struct {
	mu   sync.Mutex
	logs map[string]*buildLog
}

type buildLog struct {
	buf    bytes.Buffer
	closed bool
}

// NewBuildLogs returns an empty store.
func NewBuildLogs() *BuildLogs { return &BuildLogs{logs: map[string]*buildLog{}} }

func logKey(owner, name string, v int) string { return fmt.Sprintf("%s/%s/%d", owner, name, v) }

type logWriter struct {
	s *BuildLogs
	l *buildLog
}

func (w logWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.l.buf.Write(p)
}

func (w logWriter) Close() error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.l.closed = true
	return nil
}

// Create implements control.BuildLogs.
func (s *BuildLogs) Create(owner, name string, version int) (io.WriteCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := &buildLog{}
	s.logs[logKey(owner, name, version)] = l
	return logWriter{s, l}, nil
}

// Follow implements control.BuildLogs.
func (s *BuildLogs) Follow(ctx context.Context, owner, name string, version int, done func() bool, w io.Writer) error {
	s.mu.Lock()
	l := s.logs[logKey(owner, name, version)]
	s.mu.Unlock()
	if l == nil {
		return errors.New("no build log")
	}
	off := 0
	drain := func() error {
		s.mu.Lock()
		b := bytes.Clone(l.buf.Bytes()[off:])
		s.mu.Unlock()
		off += len(b)
		if len(b) == 0 {
			return nil
		}
		_, err := w.Write(b)
		return err
	}
	for {
		finished := done()
		if err := drain(); err != nil {
			return err
		}
		if finished {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Orchestrator is a fake cluster.Orchestrator: instances are "starting"
// for ReadyAfter, then "running" and healthy.
type Orchestrator struct {
	ReadyAfter time.Duration

	mu    sync.Mutex
	apps  map[string]*app
	calls map[string][]Call
	hold  chan struct{}
}

// Hold makes every Deploy and Scale from now on wait (after it is
// recorded in Calls) until release is called, so that a test can see an
// operation in progress.
func (o *Orchestrator) Hold() (release func()) {
	ch := make(chan struct{})
	o.mu.Lock()
	o.hold = ch
	o.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			o.mu.Lock()
			if o.hold == ch {
				o.hold = nil
			}
			o.mu.Unlock()
			close(ch)
		})
	}
}

// record notes a call and waits while the orchestrator is held.
func (o *Orchestrator) record(ctx context.Context, name string, c Call) error {
	o.mu.Lock()
	o.calls[name] = append(o.calls[name], c)
	hold := o.hold
	o.mu.Unlock()
	if hold == nil {
		return nil
	}
	select {
	case <-hold:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Call is one Deploy or Scale the orchestrator was asked for.
type Call struct {
	Op       string // "deploy" or "scale"
	Count    int
	Workload cluster.Workload // of a deploy
}

// Calls returns the Deploy and Scale calls for a UFOP, oldest first.
func (o *Orchestrator) Calls(name string) []Call {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Call(nil), o.calls[name]...)
}

type app struct {
	w    cluster.Workload
	inst []*fakeInstance
}

type fakeInstance struct {
	cluster.Instance
	readyAt time.Time
	crash   bool
}

// NewOrchestrator returns an orchestrator whose instances become healthy
// after readyAfter.
func NewOrchestrator(readyAfter time.Duration) *Orchestrator {
	return &Orchestrator{ReadyAfter: readyAfter, apps: map[string]*app{}, calls: map[string][]Call{}}
}

func (o *Orchestrator) newInstance(w cluster.Workload, index int) *fakeInstance {
	now := time.Now()
	return &fakeInstance{
		Instance: cluster.Instance{
			Index: index, ID: fmt.Sprintf("%s-v%d-%d-%d", w.Name, w.Version, index, now.UnixNano()),
			Version: w.Version, Addr: fmt.Sprintf("127.0.0.1:%d", 20000+index), Started: now,
		},
		readyAt: now.Add(o.ReadyAfter),
		crash:   w.Run == "crash",
	}
}

func (o *Orchestrator) snapshot(name string) []cluster.Instance {
	a := o.apps[name]
	if a == nil {
		return nil
	}
	now := time.Now()
	out := make([]cluster.Instance, 0, len(a.inst))
	for _, in := range a.inst {
		i := in.Instance
		switch {
		case in.crash && !now.Before(in.readyAt):
			i.State, i.Message, i.Restarts = "failed", "exited with status 1", 1
		case now.Before(in.readyAt):
			i.State = "starting"
		default:
			i.State, i.Healthy = "running", true
		}
		out = append(out, i)
	}
	return out
}

// wait waits until every instance of name of version v is healthy.
func (o *Orchestrator) wait(ctx context.Context, name string, v int) error {
	for {
		o.mu.Lock()
		inst := o.snapshot(name)
		o.mu.Unlock()
		ok := true
		for _, in := range inst {
			if in.Version == v && in.State == "failed" {
				return fmt.Errorf("instance %d of %s failed: %s", in.Index, name, in.Message)
			}
			ok = ok && in.Version == v && in.Healthy
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Deploy implements cluster.Orchestrator: new instances replace the old
// ones once they are healthy.
func (o *Orchestrator) Deploy(ctx context.Context, w cluster.Workload) error {
	if err := o.record(ctx, w.Name, Call{Op: "deploy", Count: w.Count, Workload: w}); err != nil {
		return err
	}
	o.mu.Lock()
	a := o.apps[w.Name]
	if a == nil {
		a = &app{}
		o.apps[w.Name] = a
	}
	a.w = w
	running := len(a.inst) > 0
	o.mu.Unlock()
	// The old instances serve a while before the new ones replace them.
	if running {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(o.ReadyAfter):
		}
	}
	o.mu.Lock()
	a.inst = make([]*fakeInstance, 0, w.Count)
	for i := range w.Count {
		a.inst = append(a.inst, o.newInstance(w, i))
	}
	o.mu.Unlock()
	return o.wait(ctx, w.Name, w.Version)
}

// Scale implements cluster.Orchestrator.
func (o *Orchestrator) Scale(ctx context.Context, name string, count int, _ string, _ map[string]string) error {
	if err := o.record(ctx, name, Call{Op: "scale", Count: count}); err != nil {
		return err
	}
	o.mu.Lock()
	a := o.apps[name]
	if a == nil {
		o.mu.Unlock()
		return fmt.Errorf("ufop %s: %w", name, cluster.ErrNotFound)
	}
	for len(a.inst) < count {
		a.inst = append(a.inst, o.newInstance(a.w, len(a.inst)))
	}
	a.inst = a.inst[:count]
	a.w.Count = count
	v := a.w.Version
	o.mu.Unlock()
	return o.wait(ctx, name, v)
}

// Instances implements cluster.Orchestrator.
func (o *Orchestrator) Instances(_ context.Context, name string) ([]cluster.Instance, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.apps[name] == nil {
		return nil, fmt.Errorf("ufop %s: %w", name, cluster.ErrNotFound)
	}
	return o.snapshot(name), nil
}

// Stop implements cluster.Orchestrator.
func (o *Orchestrator) Stop(_ context.Context, name string, purge bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	a := o.apps[name]
	if a == nil {
		return fmt.Errorf("ufop %s: %w", name, cluster.ErrNotFound)
	}
	a.inst = nil
	if purge {
		delete(o.apps, name)
	}
	return nil
}

// Logs implements cluster.Orchestrator: one line per instance, then with
// follow a line every 50ms until ctx ends.
func (o *Orchestrator) Logs(ctx context.Context, name string, index int, follow bool, w io.Writer) error {
	o.mu.Lock()
	var version int
	found := false
	for _, in := range o.snapshot(name) {
		if in.Index == index {
			version, found = in.Version, true
		}
	}
	o.mu.Unlock()
	if !found {
		return fmt.Errorf("instance %d: %w", index, cluster.ErrNotFound)
	}
	// Logged as people number instances: from 1.
	fmt.Fprintf(w, "%s instance %d version %d: listening on :9100\n", name, index+1, version)
	for n := 1; follow; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := fmt.Fprintf(w, "%s instance %d: request %d\n", name, index+1, n); err != nil {
			return err
		}
	}
	return nil
}
