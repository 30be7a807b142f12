package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/classq"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/tenant"
)

// waitUntil waits on cond, with a deadline only as a safety net.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// job is one Run whose fn announces itself and holds its worker until
// released.
type job struct {
	name    string
	release chan struct{}
	done    chan error
}

// runJob starts a Run of class c (none: no tenant on the context) that,
// once on a worker, sends its name on started.
func runJob(ctx context.Context, p *Pool, name string, c tenant.Class, started chan<- *job) *job {
	j := &job{name: name, release: make(chan struct{}), done: make(chan error, 1)}
	if c != "" {
		ctx = tenant.With(ctx, tenant.Tenant{User: name, Class: c})
	}
	go func() {
		j.done <- p.Run(ctx, func() error {
			started <- j
			<-j.release
			return nil
		})
	}()
	return j
}

// Paid waiters go before free ones that queued first, 4:1, and each class
// in arrival order; without a tenant a request is free.
func TestPoolServesPaidFirst(t *testing.T) {
	p := NewPool(1, classq.Uniform(16), classq.Weights{}, nil)
	started := make(chan *job, 16)
	ctx := context.Background()
	first := runJob(ctx, p, "first", tenant.Paid, started)
	require.Same(t, first, <-started)
	var queued []string
	queue := func(prefix string, c tenant.Class, n int) {
		for i := 1; i <= n; i++ {
			name := fmt.Sprintf("%s%d", prefix, i)
			runJob(ctx, p, name, c, started)
			w := len(queued) + 1
			waitUntil(t, name+" queued", func() bool { return p.Waiting() == w })
			queued = append(queued, name)
		}
	}
	queue("f", tenant.Free, 2)
	queue("n", "", 1) // no tenant: free, behind f2
	queue("p", tenant.Paid, 6)
	assert.Equal(t, 3, p.WaitingClass(tenant.Free))
	assert.Equal(t, 6, p.WaitingClass(tenant.Paid))

	var order []string
	cur := first
	for range queued {
		close(cur.release)
		require.NoError(t, <-cur.done)
		cur = <-started
		order = append(order, cur.name)
		assert.Equal(t, 1, p.Busy(), "one worker, handed over")
	}
	close(cur.release)
	require.NoError(t, <-cur.done)
	assert.Equal(t, []string{"p1", "p2", "p3", "p4", "f1", "p5", "p6", "f2", "n1"}, order)
	assert.Equal(t, 0, p.Busy())
	assert.Equal(t, 0, p.Waiting())
}

// Each class has its own bound: a full free queue refuses free requests
// with a 503 that names the class, while paid ones still queue.
func TestPoolClassBounds(t *testing.T) {
	p := NewPool(1, classq.Bounds{Free: 2, Paid: 1}, classq.Weights{}, nil)
	started := make(chan *job, 8)
	ctx := context.Background()
	first := runJob(ctx, p, "first", "", started)
	<-started
	var jobs []*job
	for i := range 2 {
		jobs = append(jobs, runJob(ctx, p, fmt.Sprint("f", i), tenant.Free, started))
		waitUntil(t, "free queued", func() bool { return p.WaitingClass(tenant.Free) == i+1 })
	}
	refused := func(c tenant.Class) error {
		t.Helper()
		err := p.Run(tenant.With(ctx, tenant.Tenant{Class: c}), func() error {
			t.Errorf("a refused %s request ran", c)
			return nil
		})
		require.Error(t, err)
		return err
	}
	for _, c := range []tenant.Class{tenant.Free, ""} {
		err := refused(c)
		assert.Equal(t, http.StatusServiceUnavailable, errs.Status(err))
		assert.Equal(t, "server busy: the free queue is full (2 waiting), retry later", errs.Public(err))
	}

	jobs = append(jobs, runJob(ctx, p, "p", tenant.Paid, started))
	waitUntil(t, "paid queued", func() bool { return p.WaitingClass(tenant.Paid) == 1 })
	err := refused(tenant.Paid)
	assert.Equal(t, "server busy: the paid queue is full (1 waiting), retry later", errs.Public(err))

	cur := first
	for range jobs {
		close(cur.release)
		require.NoError(t, <-cur.done)
		cur = <-started
	}
	close(cur.release)
	require.NoError(t, <-cur.done)
	assert.Equal(t, 0, p.Busy())
}

// A waiter whose context ends leaves its queue with 499 or 504, never runs,
// and takes no worker with it.
func TestPoolWaiterLeaves(t *testing.T) {
	for _, tc := range []struct {
		name   string
		class  tenant.Class
		end    func(ctx context.Context) (context.Context, func())
		status int
	}{
		{"client gone, free", tenant.Free, func(ctx context.Context) (context.Context, func()) { return context.WithCancel(ctx) }, StatusClientClosed},
		{"client gone, paid", tenant.Paid, func(ctx context.Context) (context.Context, func()) { return context.WithCancel(ctx) }, StatusClientClosed},
		{"deadline, paid", tenant.Paid, func(ctx context.Context) (context.Context, func()) {
			ctx, cancel := context.WithDeadline(ctx, time.Now().Add(time.Hour))
			return &deadlineCtx{Context: ctx, fired: make(chan struct{})}, cancel
		}, http.StatusGatewayTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPool(1, classq.Uniform(4), classq.Weights{}, nil)
			started := make(chan *job, 4)
			first := runJob(context.Background(), p, "first", "", started)
			<-started
			ctx, cancel := tc.end(tenant.With(context.Background(), tenant.Tenant{Class: tc.class}))
			defer cancel()
			gone := make(chan error, 1)
			go func() {
				gone <- p.Run(ctx, func() error { t.Error("the departed waiter ran"); return nil })
			}()
			waitUntil(t, "queued", func() bool { return p.WaitingClass(tc.class) == 1 })
			if d, ok := ctx.(*deadlineCtx); ok {
				close(d.fired)
			} else {
				cancel()
			}
			err := <-gone
			assert.Equal(t, tc.status, errs.Status(err))
			assert.Equal(t, 0, p.Waiting())

			close(first.release)
			require.NoError(t, <-first.done)
			assert.Equal(t, 0, p.Busy(), "the worker came back")
			// And it serves the next request at once.
			next := runJob(context.Background(), p, "next", tenant.Free, started)
			require.Same(t, next, <-started)
			close(next.release)
			require.NoError(t, <-next.done)
		})
	}
}

// deadlineCtx is a context whose deadline passes when fired is closed: a
// deadline without a clock.
type deadlineCtx struct {
	context.Context
	fired chan struct{}
}

func (d *deadlineCtx) Done() <-chan struct{} { return d.fired }
func (d *deadlineCtx) Err() error {
	select {
	case <-d.fired:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// A worker handed to a waiter just as its context ends goes on to the next
// waiter or back to the pool: none is lost, whichever way the race goes.
func TestPoolHandOffAsWaiterLeaves(t *testing.T) {
	for i := range 50 {
		p := NewPool(1, classq.Uniform(4), classq.Weights{}, nil)
		started := make(chan *job, 4)
		first := runJob(context.Background(), p, "first", "", started)
		<-started
		ctx, cancel := context.WithCancel(context.Background())
		gone := make(chan error, 1)
		go func() { gone <- p.Run(ctx, func() error { return nil }) }()
		waitUntil(t, "queued", func() bool { return p.Waiting() == 1 })
		second := runJob(context.Background(), p, "second", tenant.Paid, started)
		waitUntil(t, "second queued", func() bool { return p.Waiting() == 2 })
		// The free worker goes to the paid waiter, then (first's) to the
		// leaving one as it leaves.
		close(first.release)
		require.NoError(t, <-first.done)
		require.Same(t, second, <-started)
		// The leaving waiter's Remove and second's release race for the
		// lock.
		p.mu.Lock()
		cancel()
		close(second.release)
		p.mu.Unlock()
		require.NoError(t, <-second.done)
		<-gone
		waitUntil(t, fmt.Sprintf("round %d: every worker back", i), func() bool { return p.Busy() == 0 })
		assert.Equal(t, 0, p.Waiting())
	}
}

// The queue's gauges: the total and one series per class.
func TestPoolGauges(t *testing.T) {
	m := newMetrics()
	p := NewPool(1, classq.Uniform(8), classq.Weights{}, m)
	started := make(chan *job, 8)
	ctx := context.Background()
	var jobs []*job
	jobs = append(jobs, runJob(ctx, p, "first", "", started))
	<-started
	for i, c := range []tenant.Class{tenant.Free, tenant.Paid, tenant.Free, ""} {
		jobs = append(jobs, runJob(ctx, p, fmt.Sprint(i), c, started))
		waitUntil(t, "queued", func() bool { return p.Waiting() == i+1 })
	}
	want := `
# HELP qufop_gateway_queue_length Built-in steps waiting for a worker, all classes.
# TYPE qufop_gateway_queue_length gauge
qufop_gateway_queue_length 4
# HELP qufop_gateway_queue_length_by_class Built-in steps waiting for a worker, by class of service (paid, free).
# TYPE qufop_gateway_queue_length_by_class gauge
qufop_gateway_queue_length_by_class{class="free"} 3
qufop_gateway_queue_length_by_class{class="paid"} 1
# HELP qufop_gateway_workers_busy Workers running a built-in step.
# TYPE qufop_gateway_workers_busy gauge
qufop_gateway_workers_busy 1
`
	require.NoError(t, testutil.GatherAndCompare(m.reg, strings.NewReader(want),
		"qufop_gateway_queue_length", "qufop_gateway_queue_length_by_class", "qufop_gateway_workers_busy"))
	cur := jobs[0]
	for range jobs[1:] {
		close(cur.release)
		<-cur.done
		cur = <-started
	}
	close(cur.release)
	<-cur.done
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// While paid work is about, free work gets all workers but the reserve:
// a paid step starts at once beside queued free ones. Once no paid step
// came for the window, free work has the whole pool again, and the
// workers the reserve kept go to the free waiters at the next release.
func TestPoolPaidReserve(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	p := NewPool(3, classq.Uniform(8), classq.Weights{}, nil).ReservePaid(2, 10*time.Second)
	p.now = clock.now
	started := make(chan *job, 8)
	ctx := context.Background()
	finish := func(j *job) {
		t.Helper()
		close(j.release)
		require.NoError(t, <-j.done)
	}

	// No paid step yet: free work has every worker.
	var free []*job
	for i := range 3 {
		free = append(free, runJob(ctx, p, fmt.Sprint("f", i), tenant.Free, started))
		<-started
	}
	assert.Equal(t, 3, p.Busy())
	for _, j := range free {
		finish(j)
	}

	// A paid step raises the reserve: of three workers, free work gets one.
	p1 := runJob(ctx, p, "p1", tenant.Paid, started)
	require.Same(t, p1, <-started)
	finish(p1)
	f1 := runJob(ctx, p, "f1", tenant.Free, started)
	require.Same(t, f1, <-started)
	f2 := runJob(ctx, p, "f2", tenant.Free, started)
	waitUntil(t, "f2 queued", func() bool { return p.WaitingClass(tenant.Free) == 1 })
	f3 := runJob(ctx, p, "f3", "", started) // no tenant: free
	waitUntil(t, "f3 queued", func() bool { return p.WaitingClass(tenant.Free) == 2 })
	assert.Equal(t, 1, p.Busy(), "two workers stay free for paid work")

	// A paid step does not wait behind them.
	p2 := runJob(ctx, p, "p2", tenant.Paid, started)
	require.Same(t, p2, <-started)
	assert.Equal(t, 2, p.Busy())
	assert.Equal(t, 2, p.Waiting())
	finish(p2)

	// Within the window the reserve holds: f1's worker goes to f2 only.
	clock.add(9 * time.Second)
	finish(f1)
	require.Same(t, f2, <-started)
	assert.Equal(t, 1, p.Busy())
	assert.Equal(t, 1, p.Waiting())

	// Past it, the next release hands out every worker the free waiters can
	// have: f2's to f3, and no worker is kept idle.
	clock.add(2 * time.Second)
	f4 := runJob(ctx, p, "f4", tenant.Free, started)
	waitUntil(t, "f4 queued", func() bool { return p.WaitingClass(tenant.Free) == 2 })
	finish(f2)
	got := map[*job]bool{<-started: true, <-started: true}
	assert.Equal(t, map[*job]bool{f3: true, f4: true}, got)
	assert.Equal(t, 2, p.Busy())
	assert.Equal(t, 0, p.Waiting())
	finish(f3)
	finish(f4)
	assert.Equal(t, 0, p.Busy())
}

// A single worker is never kept from free work, and a reserve of 0 keeps
// none.
func TestPoolPaidReserveBounds(t *testing.T) {
	for _, tc := range []struct{ workers, reserve, freeAtOnce int }{
		{1, 1, 1},
		{2, 0, 2},
		{2, 5, 1},
		{4, 1, 3},
	} {
		t.Run(fmt.Sprintf("%d workers reserve %d", tc.workers, tc.reserve), func(t *testing.T) {
			p := NewPool(tc.workers, classq.Uniform(8), classq.Weights{}, nil).ReservePaid(tc.reserve, time.Hour)
			started := make(chan *job, 8)
			ctx := context.Background()
			paid := runJob(ctx, p, "p", tenant.Paid, started)
			<-started
			close(paid.release)
			require.NoError(t, <-paid.done)
			var jobs []*job
			for i := range tc.workers {
				jobs = append(jobs, runJob(ctx, p, fmt.Sprint("f", i), tenant.Free, started))
			}
			waitUntil(t, "all placed", func() bool { return p.Busy()+p.Waiting() == tc.workers })
			assert.Equal(t, tc.freeAtOnce, p.Busy())
			for range jobs {
				j := <-started
				close(j.release)
				require.NoError(t, <-j.done)
			}
		})
	}
}

// Refusals for a full queue are counted by class.
func TestPoolQueueRefusedMetric(t *testing.T) {
	m := newMetrics()
	p := NewPool(1, classq.Bounds{Paid: 0, Free: 0}, classq.Weights{}, m)
	started := make(chan *job, 1)
	ctx := context.Background()
	first := runJob(ctx, p, "first", tenant.Paid, started)
	<-started
	for _, c := range []tenant.Class{tenant.Free, "", tenant.Paid} {
		err := p.Run(tenant.With(ctx, tenant.Tenant{Class: c}), func() error { return nil })
		require.Equal(t, http.StatusServiceUnavailable, errs.Status(err))
	}
	close(first.release)
	require.NoError(t, <-first.done)
	want := `
# HELP qufop_gateway_queue_refused_total Built-in steps refused with 503 because their class's queue was full, by class.
# TYPE qufop_gateway_queue_refused_total counter
qufop_gateway_queue_refused_total{class="free"} 2
qufop_gateway_queue_refused_total{class="paid"} 1
`
	require.NoError(t, testutil.GatherAndCompare(m.reg, strings.NewReader(want), "qufop_gateway_queue_refused_total"))
}
