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
	"sync/atomic"
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
	// dep is set while the instance goes (see departure); it is then out
	// of the catalog and reported as StateStopping.
	dep *departure

	cancel context.CancelFunc
	done   chan struct{}
}

// departure is the way out of one instance: out of the catalog at once,
// then drained (until the Load reports no step in flight at it, for at
// most its KillTimeout), then halted, removed and forgotten. Its
// supervisor keeps running while it drains, so that a scale-up can take
// it back as it is (revived is then closed and instance.dep cleared)
// until it is halting.
type departure struct {
	halting bool          // past the drain: nothing takes it back (manager.mu)
	msg     string        // the instance's Message meanwhile (manager.mu)
	revived chan struct{} // closed when a scale-up took the instance back
	gone    chan struct{} // closed once halted, removed and forgotten
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

	mu      sync.Mutex
	wls     map[string]*workload
	closing bool // close was called: no more background departures

	// load, when set (SetLoad), says how busy each instance is.
	load atomic.Pointer[loadRef]
	// drains counts the departures under way in the background; Add only
	// under mu and while !closing, so that close can Wait.
	drains sync.WaitGroup

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

type loadRef struct{ l cluster.Load }

// drainPoll is how often a departing instance asks the Load whether its
// steps are done. The first question comes one poll after the instance
// left the catalog, which leaves a dispatcher that read the catalog just
// before the change the time to count the step it picked.
const drainPoll = 50 * time.Millisecond

// SetLoad tells the runtime where to learn the steps in flight at each
// instance (the gateway's dispatcher, which counts a step from the moment
// it picks an instance). With a Load:
//   - a scale-in (Scale, or Deploy of the running version with fewer
//     instances) stops the least busy instances: fewest steps in flight,
//     then those not healthy, then the highest index;
//   - every instance that goes (scale-in, the old version after an
//     upgrade, Stop) leaves the catalog at once, then drains: it keeps
//     running until the Load reports no step in flight at it, for at most
//     the workload's KillTimeout (then it goes anyway), and only then is
//     halted (SIGTERM, SIGKILL after KillTimeout).
//
// Without one (nil, the default) the highest indexes go, halted as soon
// as they are out of the catalog. SetLoad may be called at any time, from
// any goroutine; a departure under way keeps the Load it started with.
func (m *manager) SetLoad(l cluster.Load) {
	if l == nil {
		m.load.Store(nil)
		return
	}
	m.load.Store(&loadRef{l})
}

func (m *manager) getLoad() cluster.Load {
	if r := m.load.Load(); r != nil {
		return r.l
	}
	return nil
}

// inFlight asks the Load (if any) for the steps in flight at each
// instance of name, by instance id. Call it without m.mu: the Load takes
// its own locks.
func (m *manager) inFlight(name string) map[string]int {
	if l := m.getLoad(); l != nil {
		return l.InFlight(name)
	}
	return nil
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
// keep serving until the new ones are healthy, then stop gracefully
// (drained first, see SetLoad); Deploy returns once they are gone. If the
// new ones are not healthy within Options.DeployTimeout (or ctx ends), they
// are removed, the old ones keep serving, and Deploy says so. On a first
// deploy (nothing else runs) the new instances are kept, supervised and
// restarted, so that their state and logs can be read, and Deploy returns
// the error. A redeploy of the running version sets its count as Scale
// does (taking back instances on their way out first, stopping the least
// busy), but waits until those that go are gone.
func (m *manager) Deploy(ctx context.Context, w cluster.Workload) error {
	w, err := m.normalize(w)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if m.closing || m.ctx.Err() != nil {
		m.mu.Unlock()
		return errors.New("local orchestrator is closed")
	}
	wl := m.workloadLocked(w.Name, true)
	m.mu.Unlock()
	dctx, stop := context.WithCancel(ctx)
	defer stop()
	if err := wl.lock(dctx); err != nil {
		return err
	}
	defer wl.unlock()
	busy := m.inFlight(w.Name)

	m.mu.Lock()
	// Purged while this deploy waited (unreg): the purge wins. Taking the
	// name back would run instances of a UFOP that is being deleted; a
	// deployment asked for after the purge finds a new workload.
	if m.wls[w.Name] != wl {
		m.mu.Unlock()
		return fmt.Errorf("deploy %s v%d: the ufop was purged while this deployment waited for it", w.Name, w.Version)
	}
	var old []*instance
	for _, in := range wl.insts {
		if in.w.Version != w.Version {
			old = append(old, in)
		}
	}
	prev := wl.cur
	wl.cur = &w
	wl.deploying = true
	wl.stopDeploy = stop
	same, added, drop := m.resizeLocked(wl, w, w.Count, busy)
	m.publishLocked(wl)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		wl.deploying = false
		wl.stopDeploy = nil
		m.mu.Unlock()
	}()
	m.opts.Logger.Info("deploy", "ufop", w.Name, "version", w.Version, "count", w.Count, "new", len(added), "old", len(old))

	// A redeploy of the running version with fewer instances.
	m.stopInstances(ctx, wl, drop)
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

// resizeLocked brings the instances of w.Version (the deployed version of
// wl) to count. More: first it takes back the instances of that version
// on their way out that are not halting yet (lowest index first; they are
// in the catalog again at once), then starts new ones at the lowest free
// indexes (those of instances still halting are not free: a container of
// that name still runs). Fewer: it picks the instances to go (leastBusy
// by busy, the steps in flight by instance id), which the caller hands to
// leaveLocked or stopInstances. It returns the instances of the version
// that stay (taken back ones too), those it started, and those to go;
// m.mu is held, and the caller publishes the catalog.
func (m *manager) resizeLocked(wl *workload, w cluster.Workload, count int, busy map[string]int) (stay, added, drop []*instance) {
	var back []*instance
	taken := map[int]bool{}
	for _, in := range wl.insts {
		if in.w.Version != w.Version {
			continue
		}
		taken[in.index] = true
		switch {
		case in.dep == nil:
			stay = append(stay, in)
		case !in.dep.halting:
			back = append(back, in)
		}
	}
	if count < len(stay) {
		drop = leastBusy(stay, len(stay)-count, busy)
		stay = slices.DeleteFunc(stay, func(in *instance) bool { return slices.Contains(drop, in) })
		return stay, nil, drop
	}
	for _, in := range sortedByIndex(back) {
		if len(stay) >= count {
			break
		}
		close(in.dep.revived)
		in.dep = nil
		in.serving = true
		stay = append(stay, in)
		m.opts.Logger.Info("instance taken back", "ufop", w.Name, "version", w.Version, "index", in.index)
	}
	for i := 0; len(stay)+len(added) < count; i++ {
		if !taken[i] {
			added = append(added, m.addLocked(wl, w, i))
		}
	}
	return stay, added, nil
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

// stopInstances takes ins out of the catalog, drains them, stops them
// gracefully (in parallel) and forgets them; it returns once they are
// gone. Instances already on their way out (a scale-in in the
// background) are waited for.
func (m *manager) stopInstances(ctx context.Context, wl *workload, ins []*instance) {
	if len(ins) == 0 {
		return
	}
	m.mu.Lock()
	m.leaveLocked(ctx, wl, ins)
	var gone []chan struct{}
	for _, in := range ins {
		gone = append(gone, in.dep.gone)
	}
	m.mu.Unlock()
	for _, c := range gone {
		<-c
	}
}

// leaveLocked takes ins out of the catalog and starts their departures
// (drain, halt, remove, forget: see departure) in the background, tracked
// for close. Instances already leaving are left on their way. m.mu is
// held.
func (m *manager) leaveLocked(ctx context.Context, wl *workload, ins []*instance) {
	if len(ins) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	for _, in := range ins {
		if in.dep != nil {
			continue
		}
		dep := &departure{msg: "stopping: out of the catalog", revived: make(chan struct{}), gone: make(chan struct{})}
		in.dep = dep
		in.serving = false
		tracked := !m.closing
		if tracked {
			m.drains.Add(1)
		}
		go func() {
			if tracked {
				defer m.drains.Done()
			}
			m.depart(ctx, wl, in, dep)
		}()
	}
	m.publishLocked(wl)
}

// depart drains in, then halts it, removes it and forgets it, unless a
// scale-up takes it back while it drains.
func (m *manager) depart(ctx context.Context, wl *workload, in *instance, dep *departure) {
	if !m.drain(in, dep) {
		return
	}
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
	m.mu.Lock()
	wl.insts = slices.DeleteFunc(wl.insts, func(x *instance) bool { return x == in })
	m.mu.Unlock()
	close(dep.gone)
}

// drain waits until the Load reports no step in flight at in (out of the
// catalog already), for at most in's KillTimeout, then marks it halting.
// Without a Load it marks it halting at once. It returns false when a
// scale-up took in back meanwhile.
func (m *manager) drain(in *instance, dep *departure) bool {
	late := false // the kill timeout came with steps still in flight
	if load := m.getLoad(); load != nil {
		busy := func() int {
			m.mu.Lock()
			id := in.id
			m.mu.Unlock()
			return load.InFlight(in.w.Name)[id]
		}
		limit := time.NewTimer(in.w.KillTimeout)
		defer limit.Stop()
		tick := time.NewTicker(drainPoll)
		defer tick.Stop()
	wait:
		for {
			select {
			case <-dep.revived:
				return false
			case <-limit.C:
				if n := busy(); n > 0 {
					late = true
					m.opts.Logger.Warn("drain: kill timeout reached, stopping anyway", "ufop", in.w.Name, "version", in.w.Version,
						"index", in.index, "in_flight", n, "kill_timeout", in.w.KillTimeout)
					m.mu.Lock()
					dep.msg = fmt.Sprintf("stopping: %s still in flight after the kill timeout (%s)", steps(n), in.w.KillTimeout)
					m.mu.Unlock()
				}
				break wait
			case <-tick.C:
			}
			n := busy()
			if n <= 0 {
				break wait
			}
			m.mu.Lock()
			dep.msg = fmt.Sprintf("stopping: out of the catalog, waiting for %s in flight", steps(n))
			m.mu.Unlock()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if in.dep != dep {
		return false
	}
	dep.halting = true
	if !late {
		dep.msg = "stopping"
	}
	return true
}

func steps(n int) string {
	if n == 1 {
		return "1 step"
	}
	return fmt.Sprintf("%d steps", n)
}

// leastBusy returns the n instances of ins to stop first: the fewest
// steps in flight (busy, by instance id), then those not healthy (they
// serve nothing yet), then the highest index.
func leastBusy(ins []*instance, n int, busy map[string]int) []*instance {
	s := sortedByIndex(ins)
	slices.Reverse(s)
	sort.SliceStable(s, func(i, j int) bool {
		bi, bj := busy[s[i].id], busy[s[j].id]
		if bi != bj {
			return bi < bj
		}
		hi, hj := s[i].healthy && s[i].state == StateRunning, s[j].healthy && s[j].state == StateRunning
		return !hi && hj
	})
	return s[:n]
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

// Scale sets the instance count of the deployed version. Up: instances
// on their way out are taken back first (at once: they still run, and are
// in the catalog again when Scale returns), then new ones take the lowest
// free indexes. Down: the least busy go (see SetLoad; without a Load, the
// highest indexes).
//
// Scale does not wait for the instances that go: it returns once they
// are out of the catalog, and they drain, halt and are removed in the
// background (reported as StateStopping meanwhile), so that the UFOP is
// free at once for the next change: a scale-up during a drain is not
// skipped, it takes the draining instances back. A later Deploy or Stop
// waits for the departures under way, and so does Close.
//
// It returns ErrNotFound if nothing was deployed and ErrSkipped while a
// deployment (or another change) of the UFOP is under way.
func (m *manager) Scale(ctx context.Context, name string, count int, reason string, meta map[string]string) error {
	if count < 0 {
		return fmt.Errorf("scale %s: negative count %d", name, count)
	}
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		return errors.New("local orchestrator is closed")
	}
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
	busy := m.inFlight(name)

	m.mu.Lock()
	if wl.cur == nil { // purged meanwhile
		m.mu.Unlock()
		return fmt.Errorf("scale %s: %w", name, cluster.ErrNotFound)
	}
	w := *wl.cur
	w.Count = count
	wl.cur.Count = count
	from := 0
	for _, in := range wl.insts {
		if in.w.Version == w.Version && in.dep == nil {
			from++
		}
	}
	stay, added, drop := m.resizeLocked(wl, w, count, busy)
	m.leaveLocked(ctx, wl, drop)
	m.publishLocked(wl)
	m.mu.Unlock()
	m.opts.Logger.Info("scale", "ufop", name, "version", w.Version, "from", from, "to", count,
		"taken_back", len(stay)-min(from, count), "new", len(added), "leaving", len(drop), "reason", reason, "meta", meta)
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
		if in.dep != nil { // out of the catalog, on its way out
			ci.State, ci.Healthy, ci.Message = StateStopping, false, in.dep.msg
		}
		if in.addr != "" {
			ci.AddrKind = m.drv.addrKind()
		}
		out = append(out, ci)
	}
	return out, nil
}

// Stop stops every instance gracefully, drained first (see SetLoad), and
// returns once they are gone; a deployment under way is interrupted first,
// and departures under way are waited for. purge also forgets the
// workload, otherwise a later Scale starts its deployed version again.
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

// close waits for the departures under way (each bounded by its drain
// and halt), then stops the supervisors (not the instances).
func (m *manager) close() {
	m.mu.Lock()
	m.closing = true
	m.mu.Unlock()
	m.drains.Wait()
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

// WhyStopped waits, within ctx, for the supervisor to see instance id of
// name stopped (a step's call to it just broke off), and says why, as its
// state's message does: "killed: out of memory (limit 64 MiB), exited with
// code 137". "" when the instance is not known, or did not stop before ctx
// ended (the call broke for another reason). The dispatcher puts it in the
// step's 599.
func (m *manager) WhyStopped(ctx context.Context, name, id string) string {
	find := func() *instance {
		if wl := m.wls[name]; wl != nil {
			for _, in := range wl.insts {
				if in.id == id {
					return in
				}
			}
		}
		return nil
	}
	m.mu.Lock()
	in := find()
	if in == nil {
		m.mu.Unlock()
		return ""
	}
	restarts := in.restarts
	m.mu.Unlock()
	for {
		m.mu.Lock()
		stopped := in.needStart || in.state == StateExited || in.restarts > restarts
		why := in.why
		m.mu.Unlock()
		if stopped {
			return why
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(20 * time.Millisecond):
		}
	}
}
