package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/internal/testutil"
)

// fakeLoad plays the gateway's dispatcher: the steps in flight at each
// instance, by instance id, as the test sets them.
type fakeLoad struct {
	mu sync.Mutex
	n  map[string]int
}

func newFakeLoad() *fakeLoad { return &fakeLoad{n: map[string]int{}} }

func (f *fakeLoad) InFlight(name string) map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for id, n := range f.n {
		if n > 0 {
			out[id] = n
		}
	}
	return out
}

func (f *fakeLoad) set(id string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n[id] = n
}

func (f *fakeLoad) clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n = map[string]int{}
}

// byIndex returns the instances of name (any state) by index.
func byIndex(t *testing.T, o cluster.Orchestrator, name string) map[int]cluster.Instance {
	t.Helper()
	out := map[int]cluster.Instance{}
	for _, in := range instances(t, o, name) {
		out[in.Index] = in
	}
	return out
}

// indexesOf returns the sorted indexes of the instances of name, any
// state.
func indexesOf(t *testing.T, o cluster.Orchestrator, name string) []int {
	t.Helper()
	var out []int
	for _, in := range instances(t, o, name) {
		out = append(out, in.Index)
	}
	slices.Sort(out)
	return out
}

// catalogIDs returns the sorted ids of name's endpoints in the catalog.
func catalogIDs(c cluster.Catalog, name string) []string {
	var ids []string
	for _, e := range c.Healthy(name) {
		ids = append(ids, e.ID)
	}
	slices.Sort(ids)
	return ids
}

// idsAt returns the sorted ids of the instances at indexes.
func idsAt(ins map[int]cluster.Instance, indexes []int) []string {
	var ids []string
	for _, i := range indexes {
		ids = append(ids, ins[i].ID)
	}
	slices.Sort(ids)
	return ids
}

func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// drainWorkload runs testdata/server with a kill timeout no drain in
// these tests reaches unless it means to: the server exits at once on
// SIGTERM, so a stop is quick anyway.
func drainWorkload(t *testing.T, bin, name string, count int, env map[string]string) cluster.Workload {
	w := processWorkload(t, bin, 1, count, env)
	w.Name = name
	w.KillTimeout = 10 * time.Minute
	return w
}

func TestLeastBusy(t *testing.T) {
	mk := func(index int, healthy bool) *instance {
		in := &instance{index: index, id: fmt.Sprintf("i%d", index), state: StateRunning, healthy: healthy}
		if !healthy {
			in.state = StateStarting
		}
		return in
	}
	all := func(unhealthy ...int) []*instance {
		var out []*instance
		for i := 0; i < 4; i++ {
			out = append(out, mk(i, !slices.Contains(unhealthy, i)))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		ins  []*instance
		busy map[string]int
		n    int
		want []int // indexes that go
	}{
		{"no load: the highest indexes", all(), nil, 2, []int{2, 3}},
		{"idle before busy", all(), map[string]int{"i3": 1, "i2": 5}, 2, []int{0, 1}},
		{"the least busy", all(), map[string]int{"i0": 3, "i1": 1, "i2": 2, "i3": 4}, 2, []int{1, 2}},
		{"ties: the highest index", all(), map[string]int{"i0": 1, "i1": 1, "i2": 1, "i3": 1}, 1, []int{3}},
		{"not healthy before healthy", all(0), nil, 1, []int{0}},
		{"fewer steps before health", all(0), map[string]int{"i0": 1}, 1, []int{3}},
		{"all", all(1), map[string]int{"i2": 1}, 4, []int{0, 1, 2, 3}},
		{"none", all(), nil, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			for _, in := range leastBusy(tc.ins, tc.n, tc.busy) {
				got = append(got, in.index)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("leastBusy = %v, want %v", got, tc.want)
			}
		})
	}
}

// A scale-in stops the least busy instances; the others keep serving
// untouched, and a later scale-up takes the lowest free indexes.
func TestScaleInLeastBusy(t *testing.T) {
	bin := testServer(t)
	ctx := context.Background()
	p := NewProcess(ProcessConfig{Options: testOptions(), LogDir: t.TempDir()})
	defer p.Close()
	load := newFakeLoad()
	for i, tc := range []struct {
		name   string
		noLoad bool
		busy   map[int]int // steps in flight, by index
		to     int
		keep   []int // indexes left
		up     int   // then back up to
		upKeep []int
	}{
		{name: "no load: the highest indexes go", noLoad: true, to: 1, keep: []int{0}, up: 3, upKeep: []int{0, 1, 2}},
		{name: "all idle: the highest index goes", to: 2, keep: []int{0, 1}, up: 3, upKeep: []int{0, 1, 2}},
		{name: "one busy and two idle: the busy one stays", busy: map[int]int{2: 1}, to: 1, keep: []int{2}, up: 2, upKeep: []int{0, 2}},
		{name: "the busiest stays", busy: map[int]int{0: 1, 1: 3, 2: 1}, to: 1, keep: []int{1}, up: 3, upKeep: []int{0, 1, 2}},
		{name: "the two busiest stay", busy: map[int]int{0: 2, 2: 1}, to: 2, keep: []int{0, 2}, up: 3, upKeep: []int{0, 1, 2}},
		{name: "equally busy: the highest index goes", busy: map[int]int{0: 1, 1: 1, 2: 1}, to: 2, keep: []int{0, 1}, up: 3, upKeep: []int{0, 1, 2}},
		{name: "to zero", busy: map[int]int{1: 4}, to: 0, keep: nil, up: 1, upKeep: []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("least-%d", i)
			load.clear()
			if tc.noLoad {
				p.SetLoad(nil)
			} else {
				p.SetLoad(load)
			}
			if err := p.Deploy(ctx, drainWorkload(t, bin, name, 3, nil)); err != nil {
				t.Fatal(err)
			}
			defer func() {
				load.clear() // or Stop drains for the kill timeout
				p.Stop(ctx, name, true)
			}()
			before := byIndex(t, p, name)
			for i, n := range tc.busy {
				load.set(before[i].ID, n)
			}
			if err := p.Scale(ctx, name, tc.to, "test", nil); err != nil {
				t.Fatal(err)
			}
			// The ones that go are out of the catalog at once.
			if got, want := catalogIDs(p, name), idsAt(before, tc.keep); !slices.Equal(got, want) {
				t.Fatalf("catalog after the scale-in: %v, want %v (indexes %v)", got, want, tc.keep)
			}
			for i, in := range byIndex(t, p, name) {
				if slices.Contains(tc.keep, i) != (in.State != StateStopping) {
					t.Fatalf("instance %d: state %s (%s), keep %v", i, in.State, in.Message, tc.keep)
				}
			}
			load.clear() // the steps end; the drains end
			waitFor(t, patience, "the instances that go gone", func() bool { return len(instances(t, p, name)) == tc.to })
			after := byIndex(t, p, name)
			if got := indexesOf(t, p, name); !slices.Equal(got, tc.keep) {
				t.Fatalf("indexes after the scale-in: %v, want %v", got, tc.keep)
			}
			for _, i := range tc.keep {
				if after[i].ID != before[i].ID || !after[i].Healthy {
					t.Fatalf("instance %d kept: %+v, was %+v", i, after[i], before[i])
				}
			}

			if err := p.Scale(ctx, name, tc.up, "test", nil); err != nil {
				t.Fatal(err)
			}
			waitFor(t, patience, "scaled up and healthy", func() bool { return len(p.Healthy(name)) == tc.up })
			if got := indexesOf(t, p, name); !slices.Equal(got, tc.upKeep) {
				t.Fatalf("indexes after the scale-up: %v, want %v", got, tc.upKeep)
			}
			for _, i := range tc.keep {
				if byIndex(t, p, name)[i].ID != before[i].ID {
					t.Fatalf("instance %d restarted by the scale-up", i)
				}
			}
		})
	}
}

// An instance with a step in flight leaves the catalog at once, Scale
// returns, and the instance keeps running until the Load reports it idle;
// only then is it stopped (gracefully).
func TestDrainWaitsForLoad(t *testing.T) {
	bin := testServer(t)
	ctx := context.Background()
	logDir := t.TempDir()
	p := NewProcess(ProcessConfig{Options: testOptions(), LogDir: logDir})
	defer p.Close()
	load := newFakeLoad()
	p.SetLoad(load)
	const name = "drain"
	if err := p.Deploy(ctx, drainWorkload(t, bin, name, 2, nil)); err != nil {
		t.Fatal(err)
	}
	defer func() {
		load.clear() // or Stop drains for the kill timeout
		p.Stop(ctx, name, true)
	}()
	ins := byIndex(t, p, name)
	load.set(ins[0].ID, 2)
	load.set(ins[1].ID, 1) // the least busy: it goes, with a step in flight

	scaled := make(chan error, 1)
	go func() { scaled <- p.Scale(ctx, name, 1, "test", nil) }()
	select {
	case err := <-scaled:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(patience):
		t.Fatal("Scale waits for the drain")
	}
	if got := catalogIDs(p, name); !slices.Equal(got, []string{ins[0].ID}) {
		t.Fatalf("catalog after the scale-in: %v, want only instance 0 (%s)", got, ins[0].ID)
	}
	waitFor(t, patience, "instance 1 draining", func() bool {
		in, ok := byIndex(t, p, name)[1]
		return ok && in.State == StateStopping && strings.Contains(in.Message, "waiting for 1 step in flight")
	})
	// Not halted: it runs and answers (it is finishing its step).
	pid, err := strconv.Atoi(ins[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("draining instance's process: %v", err)
	}
	if v, err := httpGet(ins[1].Addr, "/version"); err != nil {
		t.Fatalf("draining instance does not answer: %q %v", v, err)
	}
	logf := filepath.Join(logDir, name+"-v1-1.log")
	if strings.Contains(readLog(t, logf), "got SIGTERM") {
		t.Fatal("instance 1 was sent SIGTERM with a step in flight")
	}

	load.set(ins[1].ID, 0)
	waitFor(t, patience, "instance 1 gone", func() bool { _, ok := byIndex(t, p, name)[1]; return !ok })
	if !strings.Contains(readLog(t, logf), "got SIGTERM") {
		t.Fatalf("instance 1 was not stopped gracefully; its log:\n%s", readLog(t, logf))
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("process %d still there: %v", pid, err)
	}
	if in := byIndex(t, p, name)[0]; in.ID != ins[0].ID || !in.Healthy || len(p.Healthy(name)) != 1 {
		t.Fatalf("instance 0 after the drain: %+v", in)
	}
}

// A drain that outlasts the kill timeout ends anyway: the instance is
// stopped with its step still counted in flight.
func TestDrainBoundedByKillTimeout(t *testing.T) {
	bin := testServer(t)
	ctx := context.Background()
	logDir := t.TempDir()
	var logs testutil.SyncBuffer
	opts := testOptions()
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	p := NewProcess(ProcessConfig{Options: opts, LogDir: logDir})
	defer p.Close()
	load := newFakeLoad()
	p.SetLoad(load)
	const name = "endless"
	w := drainWorkload(t, bin, name, 2, nil)
	w.KillTimeout = time.Second
	if err := p.Deploy(ctx, w); err != nil {
		t.Fatal(err)
	}
	defer p.Stop(ctx, name, true)
	ins := byIndex(t, p, name)
	load.set(ins[0].ID, 2)
	load.set(ins[1].ID, 1) // never done
	if err := p.Scale(ctx, name, 1, "test", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, patience, "instance 1 gone", func() bool { _, ok := byIndex(t, p, name)[1]; return !ok })
	if l := readLog(t, filepath.Join(logDir, name+"-v1-1.log")); !strings.Contains(l, "got SIGTERM") {
		t.Fatalf("instance 1 was not stopped gracefully; its log:\n%s", l)
	}
	if !strings.Contains(logs.String(), "kill timeout reached") || !strings.Contains(logs.String(), "in_flight=1") {
		t.Fatalf("no word of the drain cut short:\n%s", logs.String())
	}
	if n := load.InFlight(name)[ins[1].ID]; n != 1 {
		t.Fatalf("the load changed: %d", n)
	}
}

// A scale-up during a drain is not skipped: it takes the draining
// instance back at once (same process, in the catalog again when Scale
// returns). An instance past its drain (stopping) still holds its index:
// the scale-up starts a new one at the next free index.
func TestScaleUpDuringDrain(t *testing.T) {
	bin := testServer(t)
	ctx := context.Background()
	logDir := t.TempDir()
	p := NewProcess(ProcessConfig{Options: testOptions(), LogDir: logDir})
	t.Cleanup(func() { p.Close() })
	release := filepath.Join(t.TempDir(), "release")
	// Runs before Close: no stop stays held.
	t.Cleanup(func() { os.WriteFile(release, nil, 0o644) })
	load := newFakeLoad()
	p.SetLoad(load)
	const name = "burst"
	if err := p.Deploy(ctx, drainWorkload(t, bin, name, 2, map[string]string{"RELEASE_FILE": release})); err != nil {
		t.Fatal(err)
	}
	ins := byIndex(t, p, name)
	load.set(ins[0].ID, 2)
	load.set(ins[1].ID, 1)
	if err := p.Scale(ctx, name, 1, "test", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, patience, "instance 1 draining", func() bool {
		in, ok := byIndex(t, p, name)[1]
		return ok && in.State == StateStopping && strings.Contains(in.Message, "waiting for 1 step in flight")
	})

	// The burst comes back.
	if err := p.Scale(ctx, name, 3, "test", nil); err != nil {
		t.Fatalf("scale-up during a drain: %v", err)
	}
	if got, want := catalogIDs(p, name), idsAt(ins, []int{0, 1}); !slices.Equal(got, want) {
		t.Fatalf("catalog right after the scale-up: %v, want instances 0 and 1 (%v)", got, want)
	}
	if in := byIndex(t, p, name)[1]; in.ID != ins[1].ID || in.State != StateRunning || !in.Healthy {
		t.Fatalf("instance 1 not taken back as it was: %+v", in)
	}
	waitFor(t, patience, "3 healthy", func() bool { return len(p.Healthy(name)) == 3 })
	if got := indexesOf(t, p, name); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("indexes: %v", got)
	}
	if l := readLog(t, filepath.Join(logDir, name+"-v1-1.log")); strings.Contains(l, "got SIGTERM") {
		t.Fatalf("instance 1 was sent SIGTERM:\n%s", l)
	}

	// Instance 2 goes (idle, highest index) and is held in its graceful
	// stop (RELEASE_FILE): its index is not free.
	load.clear()
	before := byIndex(t, p, name)
	if err := p.Scale(ctx, name, 2, "test", nil); err != nil {
		t.Fatal(err)
	}
	log2 := filepath.Join(logDir, name+"-v1-2.log")
	waitFor(t, patience, "instance 2 sent SIGTERM", func() bool { return strings.Contains(readLog(t, log2), "got SIGTERM") })
	if in := byIndex(t, p, name)[2]; in.State != StateStopping || in.Message != "stopping" {
		t.Fatalf("instance 2 stopping: %+v", in)
	}
	if err := p.Scale(ctx, name, 3, "test", nil); err != nil {
		t.Fatalf("scale-up during a stop: %v", err)
	}
	waitFor(t, patience, "3 healthy", func() bool { return len(p.Healthy(name)) == 3 })
	if got := indexesOf(t, p, name); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("indexes while instance 2 stops: %v, want 0 1 2 (stopping) 3", got)
	}
	if in := byIndex(t, p, name)[2]; in.ID != before[2].ID || in.State != StateStopping {
		t.Fatalf("instance 2: %+v", in)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, patience, "instance 2 gone", func() bool { return slices.Equal(indexesOf(t, p, name), []int{0, 1, 3}) })
	if l := readLog(t, log2); !strings.Contains(l, "released") {
		t.Fatalf("instance 2 was killed, not stopped:\n%s", l)
	}
	if err := p.Stop(ctx, name, true); err != nil {
		t.Fatal(err)
	}
}

// holdRun serves /tmp/www with busybox httpd on 9100 and, on SIGTERM, logs it
// and holds its graceful stop until /tmp/release exists.
const holdRun = `mkdir -p /tmp/www && echo ok > /tmp/www/health && echo "$VERSION" > /tmp/www/version && httpd -p 9100 -h /tmp/www && echo listening; ` +
	`trap 'echo got SIGTERM; while [ ! -f /tmp/release ]; do sleep 0.1; done; echo released; exit 0' TERM; ` +
	`while true; do sleep 0.1; done`

func dockerLogs(t *testing.T, d *Docker, name string, index int) string {
	t.Helper()
	var b strings.Builder
	if err := d.Logs(context.Background(), name, index, false, &b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Scale-in on Docker: the least busy containers go; a busy one leaves the
// catalog but runs until the Load reports it idle; a scale-up during its
// drain takes it back (same container); a container past its drain keeps
// its index (its name) until removed, so the scale-up takes the next free
// one; later scale-ups take the lowest free indexes.
func TestDockerScaleIn(t *testing.T) {
	cli, img, pid := dockerSetup(t)
	const name = "scale"
	ctx := context.Background()
	d := newDocker(t, cli, pid, testOptions())
	// Runs before Close: no stop stays held.
	t.Cleanup(func() { _ = RemovePlatform(context.Background(), cli, pid) })
	load := newFakeLoad()
	d.SetLoad(load)
	w := dockerWorkload(img, name, 1, 3)
	w.Run = holdRun
	w.KillTimeout = 10 * time.Minute
	if err := d.Deploy(ctx, w); err != nil {
		t.Fatal(err)
	}
	running := func(index int) bool {
		info, err := cli.ContainerInspect(ctx, ContainerName(pid, name, 1, index))
		return err == nil && info.State != nil && info.State.Running
	}
	gone := func(index int) bool {
		_, err := cli.ContainerInspect(ctx, ContainerName(pid, name, 1, index))
		return cerrdefs.IsNotFound(err)
	}
	ins := byIndex(t, d, name)
	load.set(ins[1].ID, 2)
	load.set(ins[2].ID, 1)

	// 3 → 1: the busiest (1) stays; 0 (idle) stops at once, 2 drains.
	if err := d.Scale(ctx, name, 1, "test", nil); err != nil {
		t.Fatal(err)
	}
	if got := catalogIDs(d, name); !slices.Equal(got, []string{ins[1].ID}) {
		t.Fatalf("catalog after the scale-in: %v, want only instance 1 (%s)", got, ins[1].ID)
	}
	waitFor(t, patience, "instance 0 sent SIGTERM, instance 2 draining", func() bool {
		now := byIndex(t, d, name)
		return strings.Contains(dockerLogs(t, d, name, 0), "got SIGTERM") &&
			now[2].State == StateStopping && strings.Contains(now[2].Message, "waiting for 1 step in flight")
	})
	if !running(2) || strings.Contains(dockerLogs(t, d, name, 2), "got SIGTERM") {
		t.Fatalf("instance 2 stopped with a step in flight; its logs:\n%s", dockerLogs(t, d, name, 2))
	}

	// The burst comes back: 2 is taken back, 0 (stopping) keeps its name.
	if err := d.Scale(ctx, name, 3, "test", nil); err != nil {
		t.Fatalf("scale-up during a drain: %v", err)
	}
	if got, want := catalogIDs(d, name), idsAt(ins, []int{1, 2}); !slices.Equal(got, want) {
		t.Fatalf("catalog right after the scale-up: %v, want instances 1 and 2 (%v)", got, want)
	}
	waitFor(t, patience, "3 healthy", func() bool { return len(d.Healthy(name)) == 3 })
	if got := indexesOf(t, d, name); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("indexes: %v, want 0 (stopping) 1 2 3", got)
	}
	if now := byIndex(t, d, name); now[2].ID != ins[2].ID || now[0].ID != ins[0].ID || now[0].State != StateStopping || !running(0) {
		t.Fatalf("instances: %+v", now)
	}
	dockerExec(t, cli, ContainerName(pid, name, 1, 0), "touch", "/tmp/release")
	waitFor(t, patience, "instance 0 removed", func() bool { return gone(0) && slices.Equal(indexesOf(t, d, name), []int{1, 2, 3}) })

	// All idle: 3 → 1, the highest indexes go; then 1 → 2 takes index 0.
	load.clear()
	for _, i := range []int{2, 3} {
		dockerExec(t, cli, ContainerName(pid, name, 1, i), "touch", "/tmp/release")
	}
	if err := d.Scale(ctx, name, 1, "test", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, patience, "instances 2 and 3 removed", func() bool {
		return gone(2) && gone(3) && slices.Equal(indexesOf(t, d, name), []int{1})
	})
	if err := d.Scale(ctx, name, 2, "test", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, patience, "2 healthy", func() bool { return len(d.Healthy(name)) == 2 })
	if got := indexesOf(t, d, name); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("indexes: %v", got)
	}
	for _, i := range []int{0, 1} {
		dockerExec(t, cli, ContainerName(pid, name, 1, i), "touch", "/tmp/release")
	}
	if err := d.Stop(ctx, name, true); err != nil {
		t.Fatal(err)
	}
	if !gone(0) || !gone(1) {
		t.Fatal("containers left after Stop")
	}
}
