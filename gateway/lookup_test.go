package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/cluster/consul"
	"github.com/qufop/qufop/cluster/consul/consulfake"
	"github.com/qufop/qufop/dispatch"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/ufop"
)

// hangingUFOPs is a resolver whose store never answers: it honours its
// context and nothing else, as a client of a hung server does.
type hangingUFOPs struct{}

func (hangingUFOPs) Resolve(ctx context.Context, _ fop.Cmd, _ string) (fop.Processor, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

type noInstances struct{}

func (noInstances) Healthy(string) []cluster.Endpoint { return nil }

// consulDispatcher is the dispatcher of qufop gateway on a Consul fake,
// with a short lookup timeout.
func consulDispatcher(t *testing.T, fake *consulfake.Server) *dispatch.Dispatcher {
	t.Helper()
	c, err := consulapi.NewClient(&consulapi.Config{Address: fake.Addr()})
	require.NoError(t, err)
	cfg := dispatch.NewDefaultConfig()
	cfg.LookupTimeout = 200 * time.Millisecond
	return dispatch.New(cfg, ufop.NewKeeper(consul.NewKV(c, "")), noInstances{}, nil)
}

// exchange sends one request on a new connection and reads its answer,
// with a deadline only as a safety net.
func exchange(addr, target string) (status int, body string, err error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err = fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: gw\r\n\r\n", target); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", fmt.Errorf("no answer to %s: %w", target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// A record store that stops answering costs each request a 504 in
// Qiniu's form, on either front; it does not hold the connection, and
// other connections are routed and served meanwhile.
func TestHungLookupsFailInTime(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ufops func(t *testing.T) UFOPs
	}{
		{"resolver honouring its context", func(*testing.T) UFOPs { return hangingUFOPs{} }},
		{"dispatcher on a hung Consul", func(t *testing.T) UFOPs {
			fake := consulfake.New()
			t.Cleanup(fake.Close)
			fake.SetHang(true)
			return consulDispatcher(t, fake)
		}},
	} {
		for _, fast := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/fast=%v", tc.name, fast), func(t *testing.T) {
				cfg := NewDefaultConfig()
				cfg.FastFront = fast
				cfg.RequestTimeout = 300 * time.Millisecond
				srv, err := New(cfg, smallBucket(t), fop.Registry{"upper": upper()}, nil,
					WithUFOPs(tc.ufops(t), func(string) string { return "admin" }))
				require.NoError(t, err)
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				cancel, done := start(srv, ln)
				t.Cleanup(func() { cancel(); <-done })
				addr := ln.Addr().String()

				results := make(chan string, 2)
				for range 2 {
					go func() {
						st, body, err := exchange(addr, "/files/small.txt?demo-ufop/x")
						var e struct {
							Code  int    `json:"code"`
							Error string `json:"error"`
						}
						_ = json.Unmarshal([]byte(body), &e)
						results <- fmt.Sprintf("%d %d %s %v", st, e.Code, e.Error, err)
					}()
				}
				// Routing is not held up by the hung lookups.
				st, body, err := exchange(addr, "/files/small.txt?upper")
				require.NoError(t, err)
				assert.Equal(t, 200, st)
				assert.Equal(t, "HELLO", body)
				for range 2 {
					got := <-results
					assert.True(t, strings.HasPrefix(got, "504 504 "), "got %q", got)
				}
			})
		}
	}
}

// partlyHung answers "demo" as echoUFOP does and hangs on every other name.
type partlyHung struct{}

func (partlyHung) Resolve(ctx context.Context, cmd fop.Cmd, caller string) (fop.Processor, error) {
	if cmd.Name == "demo" {
		return echoUFOP{}.Resolve(ctx, cmd, caller)
	}
	return hangingUFOPs{}.Resolve(ctx, cmd, caller)
}

// On a connection the fast front serves, a later request whose lookup
// hangs is answered too (by net/http, with 504).
func TestHungLookupOnAFastConnection(t *testing.T) {
	cfg := NewDefaultConfig()
	cfg.RequestTimeout = 300 * time.Millisecond
	srv, err := New(cfg, smallBucket(t), fop.Registry{"upper": upper()}, nil,
		WithUFOPs(partlyHung{}, func(string) string { return "admin" }))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cancel, done := start(srv, ln)
	t.Cleanup(func() { cancel(); <-done })

	resps := rawExchange(t, ln.Addr().String(), get("/files/small.txt?demo"), get("/files/small.txt?hung-ufop/x"))
	require.Len(t, resps, 2)
	assert.Equal(t, 200, resps[0].StatusCode)
	assert.Equal(t, 504, resps[1].StatusCode)
	assert.Contains(t, body(t, resps[1]), `"code":504`)
	assert.Equal(t, map[string]float64{"fast": 1}, conns(t, srv))
}
