package gateway

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	qauth "github.com/qiniu/go-sdk/v7/auth"
	qstorage "github.com/qiniu/go-sdk/v7/storage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/storage"
	"github.com/qufop/qufop/storage/local"
	"github.com/qufop/qufop/tenant"
)

// records is a BucketAccess over a map.
type records map[string]BucketInfo

func (r records) Access(b string) (BucketInfo, bool) { i, ok := r[b]; return i, ok }

type classes map[string]tenant.Class

func (c classes) Class(u string) tenant.Class { return c[u] }

// seen is a UFOP "who" that answers the tenant of its step's context and
// the caller it was resolved for.
type seen struct{}

func (seen) Resolve(_ context.Context, cmd fop.Cmd, caller string) (fop.Processor, error) {
	if cmd.Name != "who" {
		return nil, nil
	}
	return fop.ProcessorFunc(func(ctx context.Context, _ fop.Cmd, _ fop.Blob) (fop.Blob, error) {
		t := tenant.From(ctx)
		return fop.Blob{Data: []byte(fmt.Sprintf("%s/%s/%s", t.User, t.Class, caller)), MIME: "text/plain"}, nil
	}), nil
}

var (
	aliceKeys = auth.Credentials{AccessKey: "alice-ak", SecretKey: "alice-sk"}
	bobKeys   = auth.Credentials{AccessKey: "bob-ak", SecretKey: "bob-sk"}
	adminKeys = auth.Credentials{AccessKey: "admin-ak", SecretKey: "admin-sk"}
)

// privateServing serves bucket "files" (no record: public, admin's),
// "pub" (alice's, public) and "secret" (alice's, private), both fronts
// when fast.
func privateServing(t *testing.T, fast bool) (string, *Server) {
	t.Helper()
	var bs []storage.Bucket
	for _, name := range []string{"files", "pub", "secret"} {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "small.txt"), []byte("hello"), 0o644))
		b, err := local.New(name, dir)
		require.NoError(t, err)
		bs = append(bs, b)
	}
	set, err := storage.NewSet(bs...)
	require.NoError(t, err)
	var keys auth.Users
	keys.Add("alice", aliceKeys)
	keys.Add("bob", bobKeys)
	keys.Add("admin", adminKeys)
	cfg := NewDefaultConfig()
	cfg.FastFront = fast
	srv, err := New(cfg, set, fop.Registry{"upper": upper()}, nil,
		WithUFOPs(seen{}, func(string) string { return "admin" }),
		WithAccess(records{"pub": {Owner: "alice"}, "secret": {Owner: "alice", Private: true}}, keys.Lookup, "admin"),
		WithClasses(classes{"alice": tenant.Paid, "admin": tenant.Paid}))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cancel, done := start(srv, ln)
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	return ln.Addr().String(), srv
}

// fetch GETs u on a connection of its own (routed by this request alone).
func fetch(t *testing.T, u string) (int, string, http.Header) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := c.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b), resp.Header
}

func signed(c auth.Credentials, domain, keyAndQuery string, e int64) string {
	return qstorage.MakePrivateURL(qauth.New(c.AccessKey, c.SecretKey), domain, keyAndQuery, e)
}

func TestPrivateBuckets(t *testing.T) {
	for _, fast := range []bool{false, true} {
		addr, srv := privateServing(t, fast)
		domain := "http://" + addr
		e := time.Now().Add(time.Hour).Unix()
		es := strconv.FormatInt(e, 10)
		past := time.Now().Add(-time.Minute).Unix()
		good := signed(aliceKeys, domain, "secret/small.txt?who|who", e)
		for _, tc := range []struct {
			name   string
			url    string
			status int
			body   string // exact for a 200, a substring of the error otherwise
			front  string // the front a fast gateway serves it on ("" for either)
		}{
			{"public record, no token", domain + "/pub/small.txt?who", 200, "alice/paid/alice", "fast"},
			{"flag bucket, no token", domain + "/files/small.txt?who", 200, "admin/paid/admin", "fast"},
			{"public record, download", domain + "/pub/small.txt", 200, "hello", "std"},
			{"private, no token", domain + "/secret/small.txt?who", 401, `bucket \"secret\" is private: a download token is required`, ""},
			{"private, download without token", domain + "/secret/small.txt", 401, "a download token is required", "std"},
			{"private, ufop chain", good, 200, "alice/paid/alice", "fast"},
			{"private, download", signed(aliceKeys, domain, "secret/small.txt", e), 200, "hello", "std"},
			{"private, built-in and ufop", signed(aliceKeys, domain, "secret/small.txt?upper|who", e), 200, "alice/paid/alice", "std"},
			{"private, attname", signed(aliceKeys, domain, "secret/small.txt?upper&attname=a.txt", e), 200, "HELLO", "std"},
			{"admin's token", signed(adminKeys, domain, "secret/small.txt?who", e), 200, "alice/paid/alice", "fast"},
			{"expired", signed(aliceKeys, domain, "secret/small.txt?who", past), 401, "download token expired at " + time.Unix(past, 0).UTC().Format(time.RFC3339), "fast"},
			{"expired download", signed(aliceKeys, domain, "secret/small.txt", past), 401, "expired", "std"},
			{"tampered chain", strings.Replace(good, "who|who", "who|upper", 1), 401, "signature does not match", "std"},
			{"tampered e", strings.Replace(good, "e="+es, "e="+strconv.FormatInt(e+1, 10), 1), 401, "signature does not match", "fast"},
			{"another user's token", signed(bobKeys, domain, "secret/small.txt?who", e), 403, `the download token of user \"bob\" does not open it`, "fast"},
			{"unknown key", signed(auth.Credentials{AccessKey: "carol", SecretKey: "x"}, domain, "secret/small.txt?who", e), 401, "signature does not match", "fast"},
		} {
			t.Run(fmt.Sprintf("fast=%v/%s", fast, tc.name), func(t *testing.T) {
				before := conns(t, srv)
				status, body, h := fetch(t, tc.url)
				assert.Equal(t, tc.status, status, body)
				if tc.status == 200 {
					assert.Equal(t, tc.body, body)
				} else {
					assert.Contains(t, body, tc.body)
					assert.Contains(t, body, fmt.Sprintf(`"code":%d`, tc.status))
					assert.Equal(t, "no-store", h.Get("Cache-Control"))
				}
				if fast && tc.front != "" {
					assert.Equal(t, before[tc.front]+1, conns(t, srv)[tc.front], "served on the %s front", tc.front)
				}
			})
		}
		t.Run(fmt.Sprintf("fast=%v/etag without the token", fast), func(t *testing.T) {
			// e and token are download parameters: two URLs for one
			// chain have one ETag, that of the public bucket's result.
			_, _, h1 := fetch(t, signed(aliceKeys, domain, "secret/small.txt?upper", e))
			_, _, h2 := fetch(t, signed(aliceKeys, domain, "secret/small.txt?upper", e+60))
			require.NotEmpty(t, h1.Get("ETag"))
			assert.Equal(t, h1.Get("ETag"), h2.Get("ETag"))
		})
	}
}

// Without WithAccess the tenant is the owner WithUFOPs names, free.
func TestTenantWithoutRecords(t *testing.T) {
	set := smallBucket(t)
	var mu sync.Mutex
	var got tenant.Tenant
	ufops := ufopsFunc(func(cmd fop.Cmd) fop.Processor {
		return fop.ProcessorFunc(func(ctx context.Context, _ fop.Cmd, in fop.Blob) (fop.Blob, error) {
			mu.Lock()
			got = tenant.From(ctx)
			mu.Unlock()
			return in, nil
		})
	})
	srv, err := New(NewDefaultConfig(), set, nil, nil, WithUFOPs(ufops, func(string) string { return "admin" }))
	require.NoError(t, err)
	f := &fixture{srv: srv}
	w := f.get(t, "/files/small.txt?x")
	require.Equal(t, 200, w.Code, w.Body.String())
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, tenant.Tenant{User: "admin", Class: tenant.Free}, got)
}

type ufopsFunc func(fop.Cmd) fop.Processor

func (f ufopsFunc) Resolve(_ context.Context, cmd fop.Cmd, _ string) (fop.Processor, error) {
	return f(cmd), nil
}
