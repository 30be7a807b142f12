package jobspecs

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/ufop"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

// demo is a valid 2-instance C1M1 workload.
func demo() cluster.Workload {
	return cluster.Workload{
		Name:        "demo",
		Owner:       "alice",
		Version:     3,
		Image:       "127.0.0.1:5000/alice/demo:v3",
		Run:         "./app --port $PORT_HTTP",
		Env:         map[string]string{"GREETING": "hello world", "LOG_LEVEL": "info"},
		Port:        9100,
		HealthPath:  "/health",
		CPUs:        1,
		MemoryMB:    1024,
		Count:       2,
		KillTimeout: 10 * time.Second,
	}
}

func mustJob(t *testing.T, w cluster.Workload, o Options) *api.Job {
	t.Helper()
	job, err := UFOPJob(w, o)
	if err != nil {
		t.Fatalf("UFOPJob: %v", err)
	}
	return job
}

func TestGolden(t *testing.T) {
	c2m4 := func() cluster.Workload {
		w := demo()
		w.Name = "video-transcode"
		w.Owner = "bob"
		w.Version = 12
		w.Image = "registry.example.com:5000/bob/video-transcode:v12"
		w.Env = nil
		w.HealthPath = "/healthz"
		f, err := ufop.ParseFlavor("C2M4")
		if err != nil {
			t.Fatal(err)
		}
		w.CPUs, w.MemoryMB = f.CPUs, f.MemoryMB
		w.Count = 3
		w.KillTimeout = 90 * time.Second
		return w
	}
	longKill := DefaultOptions()
	longKill.MaxKillTimeout = 2 * time.Minute // clients run with max_kill_timeout = "2m"

	zero := demo()
	zero.Count = 0

	// A Qiniu v1 program: no health path, a TCP check instead.
	v1 := demo()
	v1.Name, v1.Image = "v1fetch", "127.0.0.1:5000/alice/v1fetch:v1"
	v1.Version, v1.Count = 1, 1
	v1.Run, v1.Env = "./ufop-v1-fetch", nil
	v1.HealthPath, v1.Protocol = "", "uop"

	// A scale policy's range, with a count above its max: the job runs
	// max, and the group carries the scaling block.
	scaling := demo()
	scaling.Count = 7
	scaling.Scaling = &cluster.Scaling{Min: 1, Max: 5}

	cases := []struct {
		name string
		w    cluster.Workload
		o    Options
	}{
		{"demo-2-instances", demo(), DefaultOptions()},
		{"scaling-1-5", scaling, DefaultOptions()},
		{"c2m4-long-kill-timeout", c2m4(), longKill},
		{"count-0", zero, DefaultOptions()},
		{"v1-tcp-check", v1, DefaultOptions()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Marshal(mustJob(t, tc.w, tc.o))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.name+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./jobspecs -run Golden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the rendered job (run with -update if intended):\n%s", path, firstDiff(want, got))
			}
			// The golden JSON decodes back into the same job.
			var back api.Job
			if err := json.Unmarshal(want, &back); err != nil {
				t.Fatal(err)
			}
			again, _ := Marshal(&back)
			if !bytes.Equal(again, want) {
				t.Errorf("%s does not round-trip through api.Job", path)
			}
		})
	}
}

func firstDiff(want, got []byte) string {
	wl, gl := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return "line " + strconv.Itoa(i+1) + ":\n  want: " + w + "\n  got:  " + g
		}
	}
	return "(no line differs)"
}

func TestMarshalStable(t *testing.T) {
	w := demo()
	for i := range 20 {
		w.Env["K"+strconv.Itoa(i)] = "v"
	}
	a, err := Marshal(mustJob(t, w, DefaultOptions()))
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		b, _ := Marshal(mustJob(t, w, DefaultOptions()))
		if !bytes.Equal(a, b) {
			t.Fatal("Marshal is not stable")
		}
	}
	if !bytes.HasSuffix(a, []byte("}\n")) || !bytes.HasPrefix(a, []byte("{\n  \"Region\": null,")) {
		t.Errorf("unexpected framing: %.40q … %q", a, a[len(a)-4:])
	}
	if bytes.Contains(a, []byte(`\u003c`)) || bytes.Contains(a, []byte(`\u0026`)) {
		t.Error("HTML escaping in the JSON")
	}
}

func TestKeyFields(t *testing.T) {
	job := mustJob(t, demo(), DefaultOptions())

	if *job.ID != "ufop-demo" || *job.Name != "ufop-demo" || *job.Type != "service" {
		t.Errorf("job = %s/%s/%s", *job.ID, *job.Name, *job.Type)
	}
	if job.Namespace != nil || job.Region != nil {
		t.Error("namespace/region set without options")
	}
	if !reflect.DeepEqual(job.Datacenters, []string{"*"}) {
		t.Errorf("datacenters %v", job.Datacenters)
	}
	wantMeta := map[string]string{"qufop.ufop": "demo", "qufop.owner": "alice", "qufop.version": "3"}
	if !reflect.DeepEqual(job.Meta, wantMeta) {
		t.Errorf("job meta %v", job.Meta)
	}
	if len(job.TaskGroups) != 1 {
		t.Fatalf("%d groups", len(job.TaskGroups))
	}
	g := job.TaskGroups[0]
	if *g.Name != "ufop" || *g.Count != 2 {
		t.Errorf("group %s count %d", *g.Name, *g.Count)
	}

	t.Run("port mapping", func(t *testing.T) {
		if len(g.Networks) != 1 {
			t.Fatalf("%d networks", len(g.Networks))
		}
		n := g.Networks[0]
		if n.Mode != "" || len(n.ReservedPorts) != 0 {
			t.Errorf("network %+v", n)
		}
		if !reflect.DeepEqual(n.DynamicPorts, []api.Port{{Label: "http", Value: 0, To: 9100}}) {
			t.Errorf("dynamic ports %+v", n.DynamicPorts)
		}
		task := g.Tasks[0]
		if !reflect.DeepEqual(task.Config["ports"], []string{"http"}) {
			t.Errorf("docker ports %v", task.Config["ports"])
		}
		if task.Env["PORT_HTTP"] != "9100" {
			t.Errorf("PORT_HTTP %q", task.Env["PORT_HTTP"])
		}
	})

	t.Run("service and check", func(t *testing.T) {
		if len(g.Services) != 1 {
			t.Fatalf("%d services", len(g.Services))
		}
		s := g.Services[0]
		if s.Name != "ufop-demo" || s.PortLabel != "http" || s.Provider != "consul" {
			t.Errorf("service %s port %s provider %s", s.Name, s.PortLabel, s.Provider)
		}
		if !reflect.DeepEqual(s.Tags, []string{"v3", "ufop"}) {
			t.Errorf("tags %v", s.Tags)
		}
		if !reflect.DeepEqual(s.CanaryTags, []string{"v3", "ufop", "canary"}) {
			t.Errorf("canary tags %v", s.CanaryTags)
		}
		if len(s.Checks) != 1 {
			t.Fatalf("%d checks", len(s.Checks))
		}
		c := s.Checks[0]
		if c.Type != "http" || c.Path != "/health" || c.Interval != 5*time.Second || c.Timeout != 2*time.Second || c.PortLabel != "" {
			t.Errorf("check %+v", c)
		}
	})

	t.Run("update", func(t *testing.T) {
		if job.Update != nil {
			t.Error("job-level update set: it belongs to the group")
		}
		u := g.Update
		if u == nil {
			t.Fatal("no update block")
		}
		got := map[string]any{
			"canary": *u.Canary, "max_parallel": *u.MaxParallel, "health_check": *u.HealthCheck,
			"min_healthy_time": *u.MinHealthyTime, "healthy_deadline": *u.HealthyDeadline,
			"progress_deadline": *u.ProgressDeadline, "auto_revert": *u.AutoRevert, "auto_promote": *u.AutoPromote,
		}
		want := map[string]any{
			"canary": 1, "max_parallel": 1, "health_check": "checks",
			"min_healthy_time": 10 * time.Second, "healthy_deadline": 3 * time.Minute,
			"progress_deadline": 10 * time.Minute, "auto_revert": true, "auto_promote": false,
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("update\n got %v\nwant %v", got, want)
		}
		if u.Stagger != nil {
			t.Error("stagger set")
		}
	})

	t.Run("resources", func(t *testing.T) {
		r := g.Tasks[0].Resources
		if *r.CPU != 1000 || *r.MemoryMB != 1024 || *r.MemoryMaxMB != 1536 {
			t.Errorf("resources cpu %d memory %d memory_max %d", *r.CPU, *r.MemoryMB, *r.MemoryMaxMB)
		}
		if r.Cores != nil || r.DiskMB != nil {
			t.Error("cores/disk set")
		}
	})

	t.Run("task", func(t *testing.T) {
		task := g.Tasks[0]
		if task.Name != "ufop" || task.Driver != "docker" {
			t.Errorf("task %s driver %s", task.Name, task.Driver)
		}
		if task.Config["image"] != "127.0.0.1:5000/alice/demo:v3" || task.Config["force_pull"] != false {
			t.Errorf("config %v", task.Config)
		}
		if _, ok := task.Config["command"]; ok {
			t.Error("command set: the image has the CMD")
		}
		if task.KillSignal != "SIGTERM" || *task.KillTimeout != 10*time.Second || task.ShutdownDelay != 5*time.Second {
			t.Errorf("kill %s %s shutdown_delay %s", task.KillSignal, *task.KillTimeout, task.ShutdownDelay)
		}
		wantEnv := map[string]string{"GREETING": "hello world", "LOG_LEVEL": "info", "PORT_HTTP": "9100"}
		if !reflect.DeepEqual(task.Env, wantEnv) {
			t.Errorf("env %v", task.Env)
		}
		if !reflect.DeepEqual(task.Meta, wantMeta) || !reflect.DeepEqual(task.Config["labels"], []map[string]string{wantMeta}) {
			t.Errorf("task meta %v labels %v", task.Meta, task.Config["labels"])
		}
	})

	t.Run("restart and reschedule", func(t *testing.T) {
		rp := g.RestartPolicy
		if *rp.Attempts != 3 || *rp.Interval != 5*time.Minute || *rp.Delay != 15*time.Second || *rp.Mode != "delay" {
			t.Errorf("restart %d %s %s %s", *rp.Attempts, *rp.Interval, *rp.Delay, *rp.Mode)
		}
		rs := g.ReschedulePolicy
		if !*rs.Unlimited || *rs.Attempts != 0 || *rs.DelayFunction != "exponential" || *rs.Delay != 30*time.Second || *rs.MaxDelay != 10*time.Minute {
			t.Errorf("reschedule %+v", rs)
		}
	})
}

// TestTCPCheck: a workload without a health path (a Qiniu v1 program) gets
// a TCP check on the service's port with the HTTP check's interval and
// timeout; everything else is rendered as for an HTTP check.
func TestTCPCheck(t *testing.T) {
	w := demo()
	w.HealthPath, w.Protocol = "", "uop"
	o := DefaultOptions()
	o.CheckInterval, o.CheckTimeout = 3*time.Second, time.Second
	job := mustJob(t, w, o)
	s := job.TaskGroups[0].Services[0]
	if len(s.Checks) != 1 {
		t.Fatalf("%d checks", len(s.Checks))
	}
	want := api.ServiceCheck{Name: "tcp-alive", Type: "tcp", Interval: 3 * time.Second, Timeout: time.Second}
	if !reflect.DeepEqual(s.Checks[0], want) {
		t.Errorf("check\n got %+v\nwant %+v", s.Checks[0], want)
	}
	if s.PortLabel != "http" {
		t.Errorf("service port %q: the check inherits it", s.PortLabel)
	}

	// The rest of the job is the HTTP-checked one's.
	w.HealthPath = "/health"
	httpJob := mustJob(t, w, o)
	if c := httpJob.TaskGroups[0].Services[0].Checks[0]; c.Name != "http-alive" || c.Type != "http" || c.Path != "/health" {
		t.Errorf("HTTP check %+v", c)
	}
	httpJob.TaskGroups[0].Services[0].Checks = nil
	job.TaskGroups[0].Services[0].Checks = nil
	a, _ := Marshal(job)
	b, _ := Marshal(httpJob)
	if !bytes.Equal(a, b) {
		t.Errorf("the jobs differ beyond the check: %s", firstDiff(b, a))
	}
}

func TestEnvDoesNotAlias(t *testing.T) {
	w := demo()
	w.Env["PORT_HTTP"] = "1234" // the platform's value wins
	job := mustJob(t, w, DefaultOptions())
	if got := job.TaskGroups[0].Tasks[0].Env["PORT_HTTP"]; got != "9100" {
		t.Errorf("PORT_HTTP %q", got)
	}
	if w.Env["PORT_HTTP"] != "1234" {
		t.Error("the workload's env was modified")
	}
	job.Meta["x"] = "y"
	if _, ok := job.TaskGroups[0].Tasks[0].Meta["x"]; ok {
		t.Error("job and task share one meta map")
	}
}

func TestCanary(t *testing.T) {
	cases := []struct {
		canary, count, want int
	}{
		{CanaryAll, 0, 1},
		{CanaryAll, 1, 1},
		{CanaryAll, 5, 5},
		{2, 5, 2},
		{3, 0, 3},
		{NoCanary, 4, 0},
	}
	for _, tc := range cases {
		o := DefaultOptions()
		o.Canary = tc.canary
		w := demo()
		w.Count = tc.count
		job := mustJob(t, w, o)
		if got := *job.TaskGroups[0].Update.Canary; got != tc.want {
			t.Errorf("Canary %d, count %d: canary = %d, want %d", tc.canary, tc.count, got, tc.want)
		}
	}
}

func TestOptionsRendering(t *testing.T) {
	o := DefaultOptions()
	o.Namespace, o.Region = "ufops", "cn-east"
	o.Datacenters = []string{"dc1", "dc2"}
	o.MemoryMaxFactor = 0
	o.ProgressDeadline = 0 // fail at the first unhealthy instance (transcript 4b)
	o.AutoPromote = true
	w := demo()
	w.KillTimeout = 0
	job := mustJob(t, w, o)
	if *job.Namespace != "ufops" || *job.Region != "cn-east" || !reflect.DeepEqual(job.Datacenters, []string{"dc1", "dc2"}) {
		t.Errorf("namespace %s region %s dcs %v", *job.Namespace, *job.Region, job.Datacenters)
	}
	o.Datacenters[0] = "changed"
	if job.Datacenters[0] != "dc1" {
		t.Error("datacenters alias the options")
	}
	g := job.TaskGroups[0]
	if g.Tasks[0].Resources.MemoryMaxMB != nil {
		t.Error("memory_max set with factor 0")
	}
	if *g.Update.ProgressDeadline != 0 || !*g.Update.AutoPromote {
		t.Errorf("progress_deadline %s auto_promote %v", *g.Update.ProgressDeadline, *g.Update.AutoPromote)
	}
	if *g.Tasks[0].KillTimeout != ufop.DefaultKillTimeout {
		t.Errorf("kill_timeout %s, want the default", *g.Tasks[0].KillTimeout)
	}
	// memory_max rounds up.
	o = DefaultOptions()
	o.MemoryMaxFactor = 1.25
	w.MemoryMB = 100
	if got := *mustJob(t, w, o).TaskGroups[0].Tasks[0].Resources.MemoryMaxMB; got != 125 {
		t.Errorf("memory_max %d", got)
	}
}

func TestImageRefs(t *testing.T) {
	ok := []string{
		"demo:v1",
		"127.0.0.1:5000/alice/demo:v3",
		"local/busybox:1",
		"registry.example.com:5000/a/b/c:1.2.3",
		"alice/demo@sha256:" + strings.Repeat("ab", 32),
	}
	for _, img := range ok {
		if msg := checkImage(img); msg != "" {
			t.Errorf("%s: %s", img, msg)
		}
	}
}

func TestValidation(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*cluster.Workload, *Options)
		field string
		msg   string // substring of the message
	}{
		{"no name", func(w *cluster.Workload, o *Options) { w.Name = "" }, "Name", "missing"},
		{"bad name", func(w *cluster.Workload, o *Options) { w.Name = "Demo_X" }, "Name", "bad ufop name"},
		{"reserved name", func(w *cluster.Workload, o *Options) { w.Name = "pfop" }, "Name", "reserved"},
		{"version 0", func(w *cluster.Workload, o *Options) { w.Version = 0 }, "Version", "≥ 1"},
		{"no image", func(w *cluster.Workload, o *Options) { w.Image = "" }, "Image", "missing"},
		{"untagged image", func(w *cluster.Workload, o *Options) { w.Image = "127.0.0.1:5000/alice/demo" }, "Image", "has no tag"},
		{"empty tag", func(w *cluster.Workload, o *Options) { w.Image = "alice/demo:" }, "Image", "has no tag"},
		{"latest", func(w *cluster.Workload, o *Options) { w.Image = "127.0.0.1:5000/alice/demo:latest" }, "Image", "latest"},
		{"registry port only", func(w *cluster.Workload, o *Options) { w.Image = "127.0.0.1:5000/demo" }, "Image", "has no tag"},
		{"no repository", func(w *cluster.Workload, o *Options) { w.Image = "registry:5000/:v1" }, "Image", "no repository"},
		{"bad digest", func(w *cluster.Workload, o *Options) { w.Image = "demo@sha256:abc" }, "Image", "digest"},
		{"space in image", func(w *cluster.Workload, o *Options) { w.Image = "demo :v1" }, "Image", "not an image"},
		{"negative count", func(w *cluster.Workload, o *Options) { w.Count = -1 }, "Count", "got -1"},
		{"no port", func(w *cluster.Workload, o *Options) { w.Port = 0 }, "Port", "9100"},
		{"port too big", func(w *cluster.Workload, o *Options) { w.Port = 70000 }, "Port", "got 70000"},
		{"relative health path", func(w *cluster.Workload, o *Options) { w.HealthPath = "health" }, "HealthPath", `"health"`},
		{"health path with query", func(w *cluster.Workload, o *Options) { w.HealthPath = "/health?x=1" }, "HealthPath", "query"},
		{"no cpus", func(w *cluster.Workload, o *Options) { w.CPUs = 0 }, "CPUs", "at least 1 core"},
		{"too little memory", func(w *cluster.Workload, o *Options) { w.MemoryMB = 5 }, "MemoryMB", "at least 10 MB"},
		{"negative kill timeout", func(w *cluster.Workload, o *Options) { w.KillTimeout = -time.Second }, "KillTimeout", "got -1s"},
		{"kill timeout over max", func(w *cluster.Workload, o *Options) { w.KillTimeout = 90 * time.Second }, "KillTimeout", "max_kill_timeout of 30s"},
		{"bad env name", func(w *cluster.Workload, o *Options) { w.Env["A=B"] = "x" }, "Env", `"A=B"`},
		{"no datacenters", func(w *cluster.Workload, o *Options) { o.Datacenters = nil }, "Options.Datacenters", "at least one"},
		{"empty datacenter", func(w *cluster.Workload, o *Options) { o.Datacenters = []string{""} }, "Options.Datacenters", "empty"},
		{"bad canary", func(w *cluster.Workload, o *Options) { o.Canary = -2 }, "Options.Canary", "got -2"},
		{"auto promote without canary", func(w *cluster.Workload, o *Options) { o.Canary = NoCanary; o.AutoPromote = true }, "Options.AutoPromote", "canaries"},
		{"max parallel 0", func(w *cluster.Workload, o *Options) { o.MaxParallel = 0 }, "Options.MaxParallel", "at least 1"},
		{"pids limit 0", func(w *cluster.Workload, o *Options) { o.PidsLimit = 0 }, "Options.PidsLimit", "at least 1"},
		{"host network", func(w *cluster.Workload, o *Options) { o.Network = "host" }, "Options.Network", `"host"`},
		{"bad network", func(w *cluster.Workload, o *Options) { o.Network = "my net" }, "Options.Network", `"my net"`},
		{"negative warm-up", func(w *cluster.Workload, o *Options) { o.WarmUp = -time.Second }, "Options.WarmUp", "got -1s"},
		{"healthy deadline ≤ warm-up", func(w *cluster.Workload, o *Options) { o.HealthyDeadline = o.WarmUp }, "Options.HealthyDeadline", "more than WarmUp"},
		{"progress deadline ≤ healthy", func(w *cluster.Workload, o *Options) { o.ProgressDeadline = o.HealthyDeadline }, "Options.ProgressDeadline", "more than HealthyDeadline"},
		{"negative shutdown delay", func(w *cluster.Workload, o *Options) { o.ShutdownDelay = -1 }, "Options.ShutdownDelay", "0 or more"},
		{"check interval too short", func(w *cluster.Workload, o *Options) { o.CheckInterval = 500 * time.Millisecond }, "Options.CheckInterval", "at least 1s"},
		{"check timeout over interval", func(w *cluster.Workload, o *Options) { o.CheckTimeout = 6 * time.Second }, "Options.CheckTimeout", "at most CheckInterval"},
		{"negative max kill timeout", func(w *cluster.Workload, o *Options) { o.MaxKillTimeout = -1 }, "Options.MaxKillTimeout", "0 (no check)"},
		{"memory factor < 1", func(w *cluster.Workload, o *Options) { o.MemoryMaxFactor = 0.5 }, "Options.MemoryMaxFactor", "got 0.5"},
		{"negative restart attempts", func(w *cluster.Workload, o *Options) { o.RestartAttempts = -1 }, "Options.RestartAttempts", "got -1"},
		{"negative restart delay", func(w *cluster.Workload, o *Options) { o.RestartDelay = -1 }, "Options.RestartDelay", "0 or more"},
		{"restart interval too short", func(w *cluster.Workload, o *Options) { o.RestartInterval = 30 * time.Second }, "Options.RestartInterval", "3 × 15s"},
		{"reschedule delays", func(w *cluster.Workload, o *Options) { o.RescheduleMaxDelay = time.Second }, "Options.RescheduleDelay", "≤ RescheduleMaxDelay"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, o := demo(), DefaultOptions()
			tc.edit(&w, &o)
			job, err := UFOPJob(w, o)
			if err == nil {
				t.Fatalf("no error; job %s", *job.ID)
			}
			if job != nil {
				t.Error("a job along with the error")
			}
			es := Errors(err)
			if len(es) != 1 {
				t.Fatalf("want 1 error, got %d: %v", len(es), err)
			}
			if es[0].Field != tc.field || !strings.Contains(es[0].Msg, tc.msg) {
				t.Errorf("got %q, want field %s and %q in the message", err, tc.field, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "jobspecs: "+tc.field+": ") {
				t.Errorf("message %q", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Error("errors.As finds no *Error")
			}
		})
	}
}

func TestValidationReportsAll(t *testing.T) {
	_, err := UFOPJob(cluster.Workload{}, Options{})
	var fields []string
	for _, e := range Errors(err) {
		fields = append(fields, e.Field)
	}
	for _, want := range []string{"Name", "Version", "Image", "Port", "CPUs", "MemoryMB", "Options.Datacenters", "Options.MaxParallel", "Options.HealthyDeadline", "Options.CheckInterval"} {
		if !strings.Contains(" "+strings.Join(fields, " ")+" ", " "+want+" ") {
			t.Errorf("no %s error in %v", want, fields)
		}
	}
}

// TestCanonicalize runs the api package's own defaulting (what the Nomad
// agent does to a registered job first) on a rendered job: it must keep
// everything we set.
func TestCanonicalize(t *testing.T) {
	job := mustJob(t, demo(), DefaultOptions())
	job.Canonicalize()
	g := job.TaskGroups[0]
	if *g.Count != 2 || *g.Update.Canary != 1 || *g.Update.MinHealthyTime != 10*time.Second || *g.Update.Stagger != 30*time.Second {
		t.Errorf("after Canonicalize: count %d canary %d min_healthy %s stagger %s", *g.Count, *g.Update.Canary, *g.Update.MinHealthyTime, *g.Update.Stagger)
	}
	if *g.RestartPolicy.Mode != "delay" || *g.Tasks[0].KillTimeout != 10*time.Second || *g.Tasks[0].Resources.MemoryMaxMB != 1536 {
		t.Error("Canonicalize changed restart mode, kill_timeout or memory_max")
	}
}

// The task runs isolated with the docker driver's own options: no
// capabilities, no-new-privileges, a pids limit, a read-only root with a
// tmpfs /tmp as large as the memory, on the network the operator names
// ($QUFOP_UFOP_NETWORK), or Docker's default one when none is named.
func TestIsolation(t *testing.T) {
	t.Setenv(EnvNetwork, "")
	cfg := mustJob(t, demo(), DefaultOptions()).TaskGroups[0].Tasks[0].Config
	if _, ok := cfg["network_mode"]; ok {
		t.Errorf("network_mode %v with no network named", cfg["network_mode"])
	}
	want := map[string]any{
		"cap_drop":        []string{"all"},
		"security_opt":    []string{"no-new-privileges"},
		"pids_limit":      int64(DefaultPidsLimit),
		"readonly_rootfs": true,
		"mount": []map[string]any{{
			"type": "tmpfs", "target": "/tmp", "readonly": false,
			"tmpfs_options": []map[string]any{{"size": int64(demo().MemoryMB) << 20}},
		}},
	}
	for k, v := range want {
		if !reflect.DeepEqual(cfg[k], v) {
			t.Errorf("config %s = %#v, want %#v", k, cfg[k], v)
		}
	}

	t.Setenv(EnvNetwork, "qufop-ufops")
	o := DefaultOptions()
	o.PidsLimit = 64
	job := mustJob(t, demo(), o)
	cfg = job.TaskGroups[0].Tasks[0].Config
	if cfg["network_mode"] != "qufop-ufops" || cfg["pids_limit"] != int64(64) {
		t.Errorf("network_mode %v pids_limit %v", cfg["network_mode"], cfg["pids_limit"])
	}
	// As the Nomad API takes it: the JSON of the task config.
	b, err := Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"network_mode": "qufop-ufops"`, `"readonly_rootfs": true`, `"cap_drop": [`, `"no-new-privileges"`, `"pids_limit": 64`, `"type": "tmpfs"`} {
		if !bytes.Contains(b, []byte(s)) {
			t.Errorf("rendered job lacks %s", s)
		}
	}
}
