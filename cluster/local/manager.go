package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/qufop/qufop/cluster"
)

// Instance states (cluster.Instance.State).
const (
	StateStarting = "starting" // started, not healthy yet
	StateRunning  = "running"  // has been healthy (Healthy says whether it still is)
	StateStopping = "stopping" // being stopped on purpose
	StateFailed   = "failed"   // could not be started; retried with back-off
	StateExited   = "exited"   // crashed; restarted with back-off
)

// driver starts and stops the instances the manager supervises. The
// supervisor goroutine of an instance is the only caller of start, status
// and halt while it runs; stop and remove come after it ended.
type driver interface {
	// start starts the instance (again, after a crash or a halt) and
	// returns its id and addresses. A start that reached the daemon is
	// finished even when ctx ends meanwhile, so that a stop right after
	// finds (and removes) what it made.
	start(ctx context.Context, in *instance) (id string, ep endpoint, err error)
	// addrKind is the cluster.Instance.AddrKind of the addresses start
	// returns.
	addrKind() string
	// status reports whether the instance is no longer running, and why.
	status(ctx context.Context, in *instance) (exited bool, why string, err error)
	// halt stops the instance gracefully: the stop signal, then SIGKILL
	// after timeout. Halting a stopped instance is not an error.
	halt(ctx context.Context, in *instance, timeout time.Duration) error
	// remove releases what start made (the container).
	remove(ctx context.Context, in *instance) error
	// logs writes the instance's output.
	logs(ctx context.Context, in *instance, follow bool, w io.Writer) error
}

// endpoint is where an instance is reached: addr by the platform, and
// published (when it differs) by people on the machine.
type endpoint struct {
	addr, published string
}

// instance is one slot of a workload version.
type instance struct {
	w     cluster.Workload // spec of its version
	index int
	priv  any // driver state, see driver

	// Guarded by manager.mu.
	id, addr       string
	published      string // see endpoint
	state          string
	healthy        bool
	everHealthy    bool
	fails          int
	unhealthySince time.Time
	restarts       int
	crashes        int // consecutive, for the back-off
	message        string
	why            string // why it last exited
	started        time.Time
	serving        bool // in the catalog when healthy
	launched       bool // started at least once
	needStart      bool
	nextStart      time.Time

	cancel context.CancelFunc
	done   chan struct{}
}

type workload struct {
	name       string
	cur        *cluster.Workload // deployed version; nil before the first Deploy
	insts      []*instance
	op         chan struct{} // one Deploy/Scale/Stop at a time
	deploying  bool
	stopDeploy context.CancelFunc
}

// manager implements cluster.Orchestrator and cluster.Catalog on a driver.
type manager struct {
	opts Options
	drv  driver
	hc   *http.Client

	ctx    context.Context // root of the supervisors; canceled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu  sync.Mutex
	wls map[string]*workload

	catMu sync.RWMutex
	cat   map[string][]cluster.Endpoint
}

func newManager(opts Options, drv driver) *manager {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &manager{
		opts: opts,
		drv:  drv,
		hc: &http.Client{
			Timeout:   opts.HealthTimeout,
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		ctx:    ctx,
		cancel: cancel,
		wls:    map[string]*workload{},
		cat:    map[string][]cluster.Endpoint{},
	}
}

func (m *manager) normalize(w cluster.Workload) (cluster.Workload, error) {
	if w.Name == "" {
		return w, errors.New("workload has no name")
	}
	if w.Count < 0 {
		return w, fmt.Errorf("workload %s: negative count %d", w.Name, w.Count)
	}
	if w.Port <= 0 {
		w.Port = 9100
	}
	if w.KillTimeout <= 0 {
		w.KillTimeout = m.opts.KillTimeout
	}
	w.Env = cloneEnv(w.Env)
	return w, nil
}

func cloneEnv(env map[string]string) map[string]string {
	if env == nil {
		return nil
	}
	out := make(map[string]string, len(env))
	for k, v := range env {
		out[k] = v
	}
	return out
}

// workloadLocked returns the workload record of name, creating it if asked.
func (m *manager) workloadLocked(name string, create bool) *workload {
	wl := m.wls[name]
	if wl == nil && create {
		wl = &workload{name: name, op: make(chan struct{}, 1)}
		m.wls[name] = wl
	}
	return wl
}

func (wl *workload) lock(ctx context.Context) error {
	select {
	case wl.op <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (wl *workload) tryLock() bool {
	select {
	case wl.op <- struct{}{}:
		return true
	default:
		return false
	}
}

func (wl *workload) unlock() { <-wl.op }

// Deploy runs w.Count instances of w.Version. Instances of other versions
// keep serving until the new ones are healthy, then stop gracefully. If the
// new ones are not healthy within Options.DeployTimeout (or ctx ends), they
// are removed, the old ones keep serving, and Deploy says so. On a first
// deploy (nothing else runs) the new instances are kept, supervised and
// restarted, so that their state and logs can be read, and Deploy returns
// the error.
func (m *manager) Deploy(ctx context.Context, w cluster.Workload) error {
	w, err := m.normalize(w)
	if err != nil {
		return err
	}
	if err := m.ctx.Err(); err != nil {
		return errors.New("local orchestrator is closed")
	}
	m.mu.Lock()
	wl := m.workloadLocked(w.Name, true)
	m.mu.Unlock()
	dctx, stop := context.WithCancel(ctx)
	defer stop()
	if err := wl.lock(dctx); err != nil {
		return err
	}
	defer wl.unlock()

	m.mu.Lock()
	if m.wls[w.Name] != wl { // purged while we waited: take the name again
		m.wls[w.Name] = wl
	}
	var old, same []*instance
	for _, in := range wl.insts {
		if in.w.Version == w.Version {
			same = append(same, in)
		} else {
			old = append(old, in)
		}
	}
	prev := wl.cur
	wl.cur = &w
	wl.deploying = true
	wl.stopDeploy = stop
	taken := map[int]bool{}
	for _, in := range same {
		taken[in.index] = true
	}
	var added []*instance
	for i := 0; len(same)+len(added) < w.Count; i++ {
		if !taken[i] {
			added = append(added, m.addLocked(wl, w, i))
		}
	}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		wl.deploying = false
		wl.stopDeploy = nil
		m.mu.Unlock()
	}()
	m.opts.Logger.Info("deploy", "ufop", w.Name, "version", w.Version, "count", w.Count, "new", len(added), "old", len(old))

	if len(same) > w.Count { // redeploy of the running version with fewer instances
		m.stopInstances(ctx, wl, highest(same, len(same)-w.Count))
		same = lowest(same, w.Count)
	}
	target := append(append([]*instance(nil), same...), added...)
	if err := m.waitHealthy(dctx, target); err != nil {
		if len(old) == 0 {
			return fmt.Errorf("deploy %s v%d: %w", w.Name, w.Version, err)
		}
		m.stopInstances(ctx, wl, added)
		m.mu.Lock()
		wl.cur = prev
		m.mu.Unlock()
		return fmt.Errorf("deploy %s v%d: %w; removed the new instances, v%d keeps serving",
			w.Name, w.Version, err, old[0].w.Version)
	}
	m.stopInstances(ctx, wl, old)
	m.opts.Logger.Info("deployed", "ufop", w.Name, "version", w.Version, "count", w.Count)
	return nil
}

// waitHealthy waits until every instance of ins is healthy at once.
func (m *manager) waitHealthy(ctx context.Context, ins []*instance) error {
	deadline := time.Now().Add(m.opts.DeployTimeout)
	tick := time.NewTicker(min(100*time.Millisecond, m.opts.HealthInterval))
	defer tick.Stop()
	for {
		m.mu.Lock()
		healthy := 0
		var msg string
		for _, in := range ins {
			if in.healthy {
				healthy++
			} else if in.message != "" {
				msg = fmt.Sprintf("; instance %d: %s", in.index, in.message)
			}
		}
		m.mu.Unlock()
		if healthy == len(ins) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d instances healthy after %s%s", healthy, len(ins), m.opts.DeployTimeout, msg)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d instances healthy when the deployment was interrupted (%v)%s", healthy, len(ins), ctx.Err(), msg)
		case <-tick.C:
		}
	}
}

// addLocked creates instance index of w and starts its supervisor.
func (m *manager) addLocked(wl *workload, w cluster.Workload, index int) *instance {
	in := &instance{w: w, index: index, state: StateStarting, serving: true, needStart: true, nextStart: time.Now()}
	wl.insts = append(wl.insts, in)
	m.superviseLocked(in)
	return in
}

func (m *manager) superviseLocked(in *instance) {
	ctx, cancel := context.WithCancel(m.ctx)
	in.cancel = cancel
	in.done = make(chan struct{})
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(in.done)
		m.supervise(ctx, in)
	}()
}

// stopInstances takes ins out of the catalog, then stops them gracefully
// (in parallel) and forgets them.
func (m *manager) stopInstances(ctx context.Context, wl *workload, ins []*instance) {
	if len(ins) == 0 {
		return
	}
	m.mu.Lock()
	for _, in := range ins {
		in.serving = false
		in.state = StateStopping
		in.message = "stopping"
	}
	m.publishLocked(wl)
	m.mu.Unlock()

	ctx = context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.cancel()
			<-in.done
			sctx, cancel := context.WithTimeout(ctx, in.w.KillTimeout+30*time.Second)
			defer cancel()
			if err := m.drv.halt(sctx, in, in.w.KillTimeout); err != nil {
				m.opts.Logger.Warn("stop", "ufop", in.w.Name, "version", in.w.Version, "index", in.index, "err", err)
			}
			if err := m.drv.remove(sctx, in); err != nil {
				m.opts.Logger.Warn("remove", "ufop", in.w.Name, "version", in.w.Version, "index", in.index, "err", err)
			}
		}()
	}
	wg.Wait()
	m.mu.Lock()
	wl.insts = slices.DeleteFunc(wl.insts, func(in *instance) bool { return slices.Contains(ins, in) })
	m.mu.Unlock()
}

// highest returns the n instances with the highest indexes; lowest the n
// with the lowest.
func highest(ins []*instance, n int) []*instance {
	s := sortedByIndex(ins)
	return s[len(s)-n:]
}

func lowest(ins []*instance, n int) []*instance {
	return sortedByIndex(ins)[:n]
}

func sortedByIndex(ins []*instance) []*instance {
	s := append([]*instance(nil), ins...)
	sort.SliceStable(s, func(i, j int) bool {
		if s[i].index != s[j].index {
			return s[i].index < s[j].index
		}
		return s[i].w.Version < s[j].w.Version
	})
	return s
}

// Scale sets the instance count of the deployed version: new instances take
// the lowest free indexes, removal starts at the highest. It returns
// ErrNotFound if nothing was deployed and ErrSkipped while a deployment (or
// another change) of the UFOP is under way.
func (m *manager) Scale(ctx context.Context, name string, count int, reason string, meta map[string]string) error {
	if count < 0 {
		return fmt.Errorf("scale %s: negative count %d", name, count)
	}
	m.mu.Lock()
	wl := m.workloadLocked(name, false)
	if wl == nil || wl.cur == nil {
		m.mu.Unlock()
		return fmt.Errorf("scale %s: %w", name, cluster.ErrNotFound)
	}
	m.mu.Unlock()
	if !wl.tryLock() {
		return fmt.Errorf("scale %s: a deployment or another change is under way: %w", name, cluster.ErrSkipped)
	}
	defer wl.unlock()

	m.mu.Lock()
	if wl.cur == nil { // purged meanwhile
		m.mu.Unlock()
		return fmt.Errorf("scale %s: %w", name, cluster.ErrNotFound)
	}
	w := *wl.cur
	var cur []*instance
	taken := map[int]bool{}
	for _, in := range wl.insts {
		if in.w.Version == w.Version {
			cur = append(cur, in)
			taken[in.index] = true
		}
	}
	from := len(cur)
	wl.cur.Count = count
	w.Count = count
	var drop []*instance
	if count > len(cur) {
		n := len(cur)
		for i := 0; n < count; i++ {
			if !taken[i] {
				m.addLocked(wl, w, i)
				n++
			}
		}
	} else if count < len(cur) {
		drop = highest(cur, len(cur)-count)
	}
	m.mu.Unlock()
	m.opts.Logger.Info("scale", "ufop", name, "version", w.Version, "from", from, "to", count, "reason", reason)
	m.stopInstances(ctx, wl, drop)
	return nil
}

// Instances reports every instance of the UFOP, all versions, by index.
func (m *manager) Instances(ctx context.Context, name string) ([]cluster.Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	wl := m.workloadLocked(name, false)
	if wl == nil {
		return nil, fmt.Errorf("ufop %s: %w", name, cluster.ErrNotFound)
	}
	out := []cluster.Instance{}
	for _, in := range sortedByIndex(wl.insts) {
		ci := cluster.Instance{
			Index:         in.index,
			ID:            in.id,
			Version:       in.w.Version,
			State:         in.state,
			Healthy:       in.healthy && in.state == StateRunning,
			Addr:          in.addr,
			PublishedAddr: in.published,
			Restarts:      in.restarts,
			Message:       in.message,
			Started:       in.started,
		}
		if in.addr != "" {
			ci.AddrKind = m.drv.addrKind()
		}
		out = append(out, ci)
	}
	return out, nil
}

// Stop stops every instance gracefully (a deployment under way is
// interrupted first); purge also forgets the workload, otherwise a later
// Scale starts its deployed version again.
func (m *manager) Stop(ctx context.Context, name string, purge bool) error {
	m.mu.Lock()
	wl := m.workloadLocked(name, false)
	if wl == nil {
		m.mu.Unlock()
		return fmt.Errorf("stop %s: %w", name, cluster.ErrNotFound)
	}
	if wl.stopDeploy != nil {
		wl.stopDeploy()
	}
	m.mu.Unlock()
	if err := wl.lock(ctx); err != nil {
		return err
	}
	defer wl.unlock()
	m.mu.Lock()
	ins := append([]*instance(nil), wl.insts...)
	m.mu.Unlock()
	m.stopInstances(ctx, wl, ins)
	m.mu.Lock()
	if wl.cur != nil {
		wl.cur.Count = 0
	}
	if purge && m.wls[name] == wl {
		delete(m.wls, name)
		wl.cur = nil
		m.catMu.Lock()
		delete(m.cat, name)
		m.catMu.Unlock()
	}
	m.mu.Unlock()
	m.opts.Logger.Info("stop", "ufop", name, "purge", purge)
	return nil
}

// Logs writes the output of instance index (of the deployed version if
// several versions have that index).
func (m *manager) Logs(ctx context.Context, name string, index int, follow bool, w io.Writer) error {
	m.mu.Lock()
	wl := m.workloadLocked(name, false)
	var pick *instance
	if wl != nil {
		for _, in := range wl.insts {
			if in.index != index {
				continue
			}
			if wl.cur != nil && in.w.Version == wl.cur.Version {
				pick = in
				break
			}
			if pick == nil || in.w.Version > pick.w.Version {
				pick = in
			}
		}
	}
	m.mu.Unlock()
	if pick == nil {
		return fmt.Errorf("ufop %s instance %d: %w", name, index, cluster.ErrNotFound)
	}
	return m.drv.logs(ctx, pick, follow, w)
}

// Healthy returns the healthy, serving instances of name from memory.
func (m *manager) Healthy(name string) []cluster.Endpoint {
	m.catMu.RLock()
	defer m.catMu.RUnlock()
	eps := m.cat[name]
	if len(eps) == 0 {
		return nil
	}
	return append([]cluster.Endpoint(nil), eps...)
}

// publishLocked rebuilds the catalog entry of wl; m.mu is held.
func (m *manager) publishLocked(wl *workload) {
	var eps []cluster.Endpoint
	for _, in := range sortedByIndex(wl.insts) {
		if in.serving && in.healthy && in.state == StateRunning && in.addr != "" {
			eps = append(eps, cluster.Endpoint{ID: in.id, Addr: in.addr, Version: in.w.Version})
		}
	}
	m.catMu.Lock()
	if m.wls[wl.name] == wl {
		m.cat[wl.name] = eps
	}
	m.catMu.Unlock()
}

func (m *manager) publish(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if wl := m.wls[name]; wl != nil {
		m.publishLocked(wl)
	}
}

// close stops the supervisors (not the instances).
func (m *manager) close() {
	m.cancel()
	m.wg.Wait()
}

// allInstances returns every instance of every workload.
func (m *manager) allInstances() []*instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*instance
	for _, wl := range m.wls {
		out = append(out, wl.insts...)
	}
	return out
}
