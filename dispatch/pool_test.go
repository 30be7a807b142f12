package dispatch

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/classq"
	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/ufop"
)

// eventually waits (generously) for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type fixedEndpoints struct {
	mu  sync.Mutex
	eps []cluster.Endpoint
}

func (f *fixedEndpoints) get() []cluster.Endpoint {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]cluster.Endpoint(nil), f.eps...)
}

func (f *fixedEndpoints) set(eps ...cluster.Endpoint) {
	f.mu.Lock()
	f.eps = eps
	f.mu.Unlock()
}

func newTestPool(conc int, eps ...cluster.Endpoint) (*pool, *fixedEndpoints) {
	f := &fixedEndpoints{eps: eps}
	p := newPool(f.get)
	p.setRecord(rec("q", ufop.Public, ufop.ProtocolHandler, conc))
	return p, f
}

type acquired struct {
	ep      cluster.Endpoint
	release func()
	err     error
}

func acquireAsync(p *pool, ctx context.Context, queue int, wait bool) chan acquired {
	ch := make(chan acquired, 1)
	go func() {
		ep, rel, err := p.acquire(ctx, "q", classq.Uniform(queue), wait, nil)
		ch <- acquired{ep, rel, err}
	}()
	return ch
}

// A freed slot goes to the oldest waiter: a step arriving after the
// release queues behind it instead of taking the slot.
func TestQueueIsFIFO(t *testing.T) {
	ep := cluster.Endpoint{ID: "a", Addr: "a:1", Version: 1}
	p, _ := newTestPool(1, ep)
	ctx := context.Background()
	_, relA, err := p.acquire(ctx, "q", classq.Uniform(8), false, nil)
	require.NoError(t, err)

	var waiters []chan acquired
	for i := range 3 {
		waiters = append(waiters, acquireAsync(p, ctx, 8, false))
		eventually(t, "waiter queued", func() bool { return p.stats().Pending == i+1 })
	}
	relA()
	// The slot was handed over during the release, before any waiter ran.
	st := p.stats()
	assert.Equal(t, 1, st.InFlight, "in flight right after the release")
	assert.Equal(t, 2, st.Pending)

	// A newcomer cannot jump the queue.
	late := acquireAsync(p, ctx, 8, false)
	eventually(t, "late step queued", func() bool { return p.stats().Pending == 3 })

	// Releases serve waiters in arrival order, the newcomer last.
	for i, w := range waiters {
		a := <-w
		require.NoError(t, a.err, "waiter %d", i)
		select {
		case <-late:
			t.Fatalf("the late step got a slot before waiter %d", i)
		default:
		}
		a.release()
	}
	a := <-late
	require.NoError(t, a.err)
	a.release()
	assert.Equal(t, Stats{Healthy: 1, Capacity: 1}, p.stats())
}

func TestQueueFullAndNoInstanceAreDistinct(t *testing.T) {
	ep := cluster.Endpoint{ID: "a", Addr: "a:1", Version: 1}
	ctx := context.Background()

	p, _ := newTestPool(1, ep)
	_, rel, err := p.acquire(ctx, "q", classq.Uniform(1), false, nil)
	require.NoError(t, err)
	w := acquireAsync(p, ctx, 1, false)
	eventually(t, "queued", func() bool { return p.stats().Pending == 1 })
	_, _, err = p.acquire(ctx, "q", classq.Uniform(1), false, nil)
	require.Error(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, errs.Status(err))
	assert.Contains(t, err.Error(), "queue is full")
	rel()
	(<-w).release()

	empty, _ := newTestPool(1)
	_, _, err = empty.acquire(ctx, "q", classq.Uniform(1), false, nil)
	require.Error(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, errs.Status(err))
	assert.Contains(t, err.Error(), "no healthy instance")
	assert.NotContains(t, err.Error(), "queue")

	assert.Equal(t, uint64(1), p.stats().RejectedFull)
	assert.Equal(t, uint64(0), p.stats().RejectedNoInst)
	assert.Equal(t, uint64(1), empty.stats().RejectedNoInst)
	assert.Equal(t, uint64(1), empty.stats().NoInstance)
}

// With a scale policy, a step that finds no instance waits (counted as
// demand with no instance) and is served once one appears.
func TestNoInstanceWaitsForTheScaler(t *testing.T) {
	p, eps := newTestPool(2)
	var woke []string
	var mu sync.Mutex
	ch := make(chan acquired, 1)
	go func() {
		ep, rel, err := p.acquire(context.Background(), "q", classq.Uniform(8), true, func(n string) {
			mu.Lock()
			woke = append(woke, n)
			mu.Unlock()
		})
		ch <- acquired{ep, rel, err}
	}()
	eventually(t, "step waiting", func() bool { return p.stats().NoInstanceWaiting == 1 })
	st := p.stats()
	assert.Equal(t, 1, st.Pending)
	assert.Equal(t, uint64(1), st.NoInstance)
	mu.Lock()
	assert.Equal(t, []string{"q"}, woke)
	mu.Unlock()

	eps.set(cluster.Endpoint{ID: "new", Addr: "n:1", Version: 1})
	a := <-ch
	require.NoError(t, a.err)
	assert.Equal(t, "new", a.ep.ID)
	assert.Equal(t, Stats{InFlight: 1, Capacity: 2, Healthy: 1, NoInstance: 1}, p.stats())
	a.release()
}

// A waiter whose deadline passes leaves the queue with 504, and a slot
// handed to it as it gave up goes back to the pool.
func TestWaiterDeadline(t *testing.T) {
	p, _ := newTestPool(1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, _, err := p.acquire(ctx, "q", classq.Uniform(8), true, nil)
	require.Error(t, err)
	assert.Equal(t, http.StatusGatewayTimeout, errs.Status(err))
	assert.True(t, errors.Is(err, context.DeadlineExceeded))
	assert.Equal(t, 0, p.stats().Pending)

	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	_, _, err = p.acquire(ctx2, "q", classq.Uniform(8), true, nil)
	assert.Equal(t, 499, errs.Status(err))
}

// The gauges are read from the pools at scrape time: they equal the
// figures while steps run and wait, and come back to zero.
func TestCollector(t *testing.T) {
	cat := &catalog{eps: map[string][]cluster.Endpoint{}}
	d := New(NewDefaultConfig(), records{}, cat, nil)
	cat.set("q", cluster.Endpoint{ID: "a", Addr: "a:1", Version: 1}, cluster.Endpoint{ID: "b", Addr: "b:1", Version: 1})
	p := d.pool("q")
	p.setRecord(rec("q", ufop.Public, ufop.ProtocolHandler, 2))
	var rels []func()
	for range 4 {
		_, rel, err := p.acquire(context.Background(), "q", classq.Uniform(8), false, nil)
		require.NoError(t, err)
		rels = append(rels, rel)
	}
	w := acquireAsync(p, context.Background(), 8, false)
	eventually(t, "queued", func() bool { return p.stats().Pending == 1 })

	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(d.Collector()))
	want := `
# HELP qufop_gateway_ufop_capacity Steps the UFOP's healthy instances can run at once (sum of their concurrency).
# TYPE qufop_gateway_ufop_capacity gauge
qufop_gateway_ufop_capacity{ufop="q"} 4
# HELP qufop_gateway_ufop_healthy_instances Healthy instances of the UFOP this gateway routes to.
# TYPE qufop_gateway_ufop_healthy_instances gauge
qufop_gateway_ufop_healthy_instances{ufop="q"} 2
# HELP qufop_gateway_ufop_in_flight Steps running at the UFOP's instances.
# TYPE qufop_gateway_ufop_in_flight gauge
qufop_gateway_ufop_in_flight{ufop="q"} 4
# HELP qufop_gateway_ufop_queue_length Steps waiting in the UFOP's queue for a free instance.
# TYPE qufop_gateway_ufop_queue_length gauge
qufop_gateway_ufop_queue_length{ufop="q"} 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want),
		"qufop_gateway_ufop_capacity", "qufop_gateway_ufop_healthy_instances",
		"qufop_gateway_ufop_in_flight", "qufop_gateway_ufop_queue_length"))
	assert.Equal(t, map[string]int{"a": 2, "b": 2}, d.InFlight("q"))

	for _, r := range rels {
		r()
	}
	(<-w).release()
	assert.Equal(t, 0, testutil.CollectAndCount(d.Collector(), "qufop_gateway_ufop_rejected_total")-2)
	assert.Equal(t, Stats{Capacity: 4, Healthy: 2}, d.Stats()["q"])
	assert.Empty(t, d.InFlight("q"))
}
