package jobspecs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/ufop"
)

// Names used in every rendered UFOP job. The cluster/nomad adapter scales
// group GroupName; the Catalog finds instances by service JobID(name).
const (
	GroupName = "ufop"
	TaskName  = "ufop"
	PortLabel = "http"
	// TagUFOP is on every instance of every UFOP, so that Consul can list
	// all of them with one tag filter.
	TagUFOP = "ufop"
	// TagCanary is added, through canary_tags, to a canary that is not
	// promoted yet.
	TagCanary = "canary"

	// Meta keys, the same names as the builder's and the local
	// orchestrator's container labels.
	MetaUFOP    = "qufop.ufop"
	MetaOwner   = "qufop.owner"
	MetaVersion = "qufop.version"
	// CheckHTTP and CheckTCP name the Consul check of an instance: GET
	// Workload.HealthPath, or a TCP connect when there is no health path.
	CheckHTTP = "http-alive"
	CheckTCP  = "tcp-alive"

	// ServiceMetaVersion is the version in the Consul service's meta.
	ServiceMetaVersion = "qufop_version"

	// EnvPort names the port the program must listen on in its container.
	EnvPort = "PORT_HTTP"

	// MinMemoryMB is Nomad's lower bound of resources.memory.
	MinMemoryMB = 10
)

// Canary values of Options with a meaning of their own.
const (
	// CanaryAll starts as many canaries as the group has instances, at
	// least one: a blue/green gray upgrade (DefaultOptions uses 1).
	CanaryAll = 0
	// NoCanary makes an upgrade a plain rolling update, MaxParallel at a
	// time, with no promotion step.
	NoCanary = -1
)

// Options are the cluster-wide choices that are not in a Workload.
// DefaultOptions gives working values; the zero Options is not valid.
type Options struct {
	// Datacenters the job may run in; ["*"] is all of them (Nomad ≥ 1.5).
	Datacenters []string
	// Namespace and Region are left to the server's defaults when empty.
	Namespace, Region string

	// Canary is the number of instances of a new version started next to
	// the old ones in a gray upgrade; see CanaryAll and NoCanary.
	Canary int
	// MaxParallel is how many instances are replaced at a time after the
	// promotion (or in a rolling update). At least 1.
	MaxParallel int
	// WarmUp is update.min_healthy_time: how long an instance's checks must
	// pass before it counts as healthy.
	WarmUp time.Duration
	// HealthyDeadline is how long a new instance has to become healthy
	// before it is marked unhealthy. More than WarmUp.
	HealthyDeadline time.Duration
	// ProgressDeadline fails the deployment (and, with AutoRevert, rolls it
	// back) when no instance became healthy for this long; it is also the
	// time left to promote healthy canaries. 0 is Nomad's "fail at the
	// first unhealthy instance"; otherwise more than HealthyDeadline.
	ProgressDeadline time.Duration
	// AutoRevert rolls a failed deployment back to the last stable version.
	AutoRevert bool
	// AutoPromote promotes canaries once all are healthy. Off by default:
	// `qufop upgrade` promotes.
	AutoPromote bool

	// ShutdownDelay is the time between the deregistration of an instance
	// from Consul and its kill signal, so that gateways stop picking it.
	ShutdownDelay time.Duration
	// CheckInterval and CheckTimeout of the health check, HTTP or TCP
	// (≥ 1s each, timeout ≤ interval).
	CheckInterval, CheckTimeout time.Duration
	// MaxKillTimeout is the Nomad clients' max_kill_timeout: a workload
	// asking for more is refused rather than silently cut short. 0 turns
	// the check off.
	MaxKillTimeout time.Duration

	// MemoryMaxFactor sets resources.memory_max = memory × factor (memory
	// oversubscription; ignored by Nomad, with a warning, where the
	// scheduler does not allow it). 0 leaves memory_max out; otherwise ≥ 1.
	MemoryMaxFactor float64

	// RestartAttempts restarts of a failed task within RestartInterval,
	// RestartDelay apart, on the same node; then it waits for the interval
	// to end (mode "delay") and tries again.
	RestartAttempts               int
	RestartInterval, RestartDelay time.Duration
	// RescheduleDelay and RescheduleMaxDelay: an allocation that failed
	// (e.g. unhealthy in a deployment) is placed again, without a limit,
	// with an exponential delay from RescheduleDelay up to
	// RescheduleMaxDelay.
	RescheduleDelay, RescheduleMaxDelay time.Duration

	// Network is the docker driver's network_mode: the Docker network the
	// operator made for UFOP instances on every client (see "Isolation" in
	// jobspecs/README.md: inter-container traffic off, firewalled). ""
	// leaves network_mode out: Docker's default bridge, where instances
	// reach one another and the node's ports. DefaultOptions takes it from
	// $QUFOP_UFOP_NETWORK (EnvNetwork).
	Network string
	// PidsLimit caps the processes of one instance (pids_limit). At least 1.
	PidsLimit int64
}

// EnvNetwork names the variable that DefaultOptions reads Options.Network
// from, so that every role that renders UFOP jobs (builder, scaler) runs
// them on the operator's network.
const EnvNetwork = "QUFOP_UFOP_NETWORK"

// DefaultPidsLimit is Options.PidsLimit of DefaultOptions, as the local
// runtime's.
const DefaultPidsLimit = 256

// DefaultOptions are the platform's defaults; see the package doc for the
// reasons.
func DefaultOptions() Options {
	return Options{
		Datacenters: []string{"*"},
		// One canary, then a rolling replacement: a canary per instance
		// (blue/green) needs twice the resources during every upgrade,
		// which a small cluster does not have (found on a 2-core Nomad
		// dev node: the 2nd and 3rd canaries were never placed).
		Canary:             1,
		MaxParallel:        1,
		WarmUp:             10 * time.Second,
		HealthyDeadline:    3 * time.Minute,
		ProgressDeadline:   10 * time.Minute,
		AutoRevert:         true,
		ShutdownDelay:      5 * time.Second,
		CheckInterval:      5 * time.Second,
		CheckTimeout:       2 * time.Second,
		MaxKillTimeout:     ufop.MaxKillTimeout,
		MemoryMaxFactor:    1.5,
		RestartAttempts:    3,
		RestartInterval:    5 * time.Minute,
		RestartDelay:       15 * time.Second,
		RescheduleDelay:    30 * time.Second,
		RescheduleMaxDelay: 10 * time.Minute,
		Network:            os.Getenv(EnvNetwork),
		PidsLimit:          DefaultPidsLimit,
	}
}

// Error is one thing wrong with a Workload or Options. UFOPJob reports all
// of them at once, joined (errors.Join); find them with errors.As on each
// (see Errors).
type Error struct {
	Field string // "Image", "Count", "Options.WarmUp", ...
	Msg   string
}

func (e *Error) Error() string { return "jobspecs: " + e.Field + ": " + e.Msg }

// Errors unpacks the errors returned by UFOPJob.
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var e *Error
		if errors.As(err, &e) {
			out = append(out, e)
		}
	}
	walk(err)
	return out
}

// JobID is the Nomad job (and Consul service) name of a UFOP.
func JobID(name string) string { return "ufop-" + name }

// VersionTag is the service tag of a UFOP version.
func VersionTag(version int) string { return "v" + strconv.Itoa(version) }

// CanaryCount is the update.canary of a job of count instances under o.
func (o Options) CanaryCount(count int) int {
	switch {
	case o.Canary > 0:
		return o.Canary
	case o.Canary == CanaryAll:
		return max(1, count)
	default:
		return 0
	}
}

// UFOPJob renders version w.Version of UFOP w.Name into the Nomad job that
// runs w.Count instances of it (Count(w): within w.Scaling when set, which
// becomes the group's scaling block). It checks w and o first and returns
// every problem found, each an *Error.
func UFOPJob(w cluster.Workload, o Options) (*api.Job, error) {
	if err := validate(w, o); err != nil {
		return nil, err
	}
	id := JobID(w.Name)
	version := strconv.Itoa(w.Version)
	meta := func() map[string]string {
		return map[string]string{MetaUFOP: w.Name, MetaOwner: w.Owner, MetaVersion: version}
	}

	env := make(map[string]string, len(w.Env)+1)
	for k, v := range w.Env {
		env[k] = v
	}
	env[EnvPort] = strconv.Itoa(w.Port) // the platform's, as in ufop.yaml

	killTimeout := w.KillTimeout
	if killTimeout == 0 {
		killTimeout = ufop.DefaultKillTimeout
	}

	res := &api.Resources{
		CPU:      pointerOf(w.CPUs * 1000), // as ufop.Flavor.CPUMHz
		MemoryMB: pointerOf(w.MemoryMB),
	}
	if o.MemoryMaxFactor > 0 {
		res.MemoryMaxMB = pointerOf(int(math.Ceil(float64(w.MemoryMB) * o.MemoryMaxFactor)))
	}

	tags := []string{VersionTag(w.Version), TagUFOP}
	task := &api.Task{
		Name:   TaskName,
		Driver: "docker",
		Config: map[string]any{
			"image": w.Image,
			"ports": []string{PortLabel},
			// Images are built and tagged per version by the builder and
			// are on the node or in the platform's registry: never pull a
			// tag again (and never use :latest, which is always pulled).
			"force_pull": false,
			// The docker driver's config schema takes labels as a block,
			// which the JSON API spells as a list of maps (a plain map is
			// refused at task start: "list of map of string required").
			"labels": []map[string]string{meta()},
			// Isolation (README "Isolation"): no capabilities, no gaining
			// any through setuid files, a bounded number of processes, and
			// an image that stays as built; the program writes to /tmp (a
			// tmpfs charged to its memory) and to Nomad's own task and
			// alloc directories (/local, /alloc).
			"cap_drop":        []string{"all"},
			"security_opt":    []string{"no-new-privileges"},
			"pids_limit":      o.PidsLimit,
			"readonly_rootfs": true,
			"mount": []map[string]any{{
				"type":          "tmpfs",
				"target":        "/tmp",
				"readonly":      false,
				"tmpfs_options": []map[string]any{{"size": int64(w.MemoryMB) << 20}},
			}},
		},
		Env:           env,
		Resources:     res,
		Meta:          meta(),
		KillTimeout:   pointerOf(killTimeout),
		KillSignal:    "SIGTERM",
		ShutdownDelay: o.ShutdownDelay,
	}

	update := &api.UpdateStrategy{
		MaxParallel:      pointerOf(o.MaxParallel),
		HealthCheck:      pointerOf("checks"),
		MinHealthyTime:   pointerOf(o.WarmUp),
		HealthyDeadline:  pointerOf(o.HealthyDeadline),
		ProgressDeadline: pointerOf(o.ProgressDeadline),
		Canary:           pointerOf(o.CanaryCount(Count(w))),
		AutoRevert:       pointerOf(o.AutoRevert),
		AutoPromote:      pointerOf(o.AutoPromote),
	}

	group := &api.TaskGroup{
		Name:  pointerOf(GroupName),
		Count: pointerOf(Count(w)),
		Tasks: []*api.Task{task},
		RestartPolicy: &api.RestartPolicy{
			Attempts: pointerOf(o.RestartAttempts),
			Interval: pointerOf(o.RestartInterval),
			Delay:    pointerOf(o.RestartDelay),
			Mode:     pointerOf("delay"),
		},
		ReschedulePolicy: &api.ReschedulePolicy{
			Attempts:      pointerOf(0),
			Interval:      pointerOf(time.Duration(0)),
			Delay:         pointerOf(o.RescheduleDelay),
			DelayFunction: pointerOf("exponential"),
			MaxDelay:      pointerOf(o.RescheduleMaxDelay),
			Unlimited:     pointerOf(true),
		},
		Update: update,
		Networks: []*api.NetworkResource{{
			DynamicPorts: []api.Port{{Label: PortLabel, To: w.Port}},
		}},
		Services: []*api.Service{{
			Provider:   api.ServiceProviderConsul,
			Name:       id,
			PortLabel:  PortLabel,
			Tags:       tags,
			CanaryTags: append(append([]string(nil), tags...), TagCanary),
			// Consul refuses service meta keys with '.' (only letters,
			// digits, '-' and '_'), and Nomad then fails to sync the
			// service at all: the service has its own key.
			Meta:       map[string]string{ServiceMetaVersion: version},
			CanaryMeta: map[string]string{ServiceMetaVersion: version},
			Checks:     []api.ServiceCheck{healthCheck(w, o)},
		}},
	}

	if w.Scaling != nil {
		group.Scaling = scalingBlock(*w.Scaling)
	}

	if o.Network != "" {
		task.Config["network_mode"] = o.Network
	}

	job := &api.Job{
		ID:          pointerOf(id),
		Name:        pointerOf(id),
		Type:        pointerOf(api.JobTypeService),
		Datacenters: append([]string(nil), o.Datacenters...),
		TaskGroups:  []*api.TaskGroup{group},
		Meta:        meta(),
	}
	if o.Namespace != "" {
		job.Namespace = pointerOf(o.Namespace)
	}
	if o.Region != "" {
		job.Region = pointerOf(o.Region)
	}
	return job, nil
}

// Count is the count the job of w runs: w.Count, brought into
// [w.Scaling.Min, w.Scaling.Max] when w has a scaling range. Nomad refuses
// to register a group whose count is outside its scaling block, and a
// policy set (or changed) on a running UFOP is a range its current count
// must follow, not a reason to refuse the deployment.
func Count(w cluster.Workload) int {
	if w.Scaling == nil {
		return w.Count
	}
	return min(max(w.Count, w.Scaling.Min), w.Scaling.Max)
}

// scalingBlock is the group's scaling block. Nomad itself refuses a
// Jobs().Scale to a count outside [Min, Max] (400 "group count was less
// than scaling policy minimum: 0 < 1", "... greater than scaling policy
// maximum: 6 > 5") whether the block is enabled or not; enabled = false
// keeps nomad-autoscaler, where one runs on the cluster, off the group:
// the qufop scaler sizes it, and the block carries no autoscaler policy.
func scalingBlock(r cluster.Scaling) *api.ScalingPolicy {
	return &api.ScalingPolicy{
		Type:    api.ScalingPolicyTypeHorizontal,
		Min:     pointerOf(int64(r.Min)),
		Max:     pointerOf(int64(r.Max)),
		Enabled: pointerOf(false),
	}
}

// healthCheck is the Consul check of an instance: GET HealthPath
// ("http-alive", passing on a 2xx), or, for a program without a health
// path (a Qiniu v1 program), a TCP connect to the service's port
// ("tcp-alive", passing once the port accepts). Both inherit the service's
// port label and run every CheckInterval with CheckTimeout.
func healthCheck(w cluster.Workload, o Options) api.ServiceCheck {
	if w.HealthPath == "" {
		return api.ServiceCheck{
			Name:     CheckTCP,
			Type:     "tcp",
			Interval: o.CheckInterval,
			Timeout:  o.CheckTimeout,
		}
	}
	return api.ServiceCheck{
		Name:     CheckHTTP,
		Type:     "http",
		Path:     w.HealthPath,
		Interval: o.CheckInterval,
		Timeout:  o.CheckTimeout,
	}
}

// Marshal renders job as JSON indented by two spaces, with a final newline:
// the format of the golden files. Field order is the api package's, map
// keys are sorted, durations are nanoseconds, unset fields are null: the
// same shape as `nomad job run -output` (without its {"Job": …} wrapper).
func Marshal(job *api.Job) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(job); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func pointerOf[T any](v T) *T { return &v }

var (
	healthPath = regexp.MustCompile(`^/[^\s?#]*$`)
	digestRef  = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)
	// networkName is a Docker network name; "host" and "none" are names
	// too, and refused: the first shares the node's network, the second
	// has none for the port mapping.
	networkName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
)

func validate(w cluster.Workload, o Options) error {
	var es []error
	bad := func(field, format string, a ...any) {
		es = append(es, &Error{Field: field, Msg: fmt.Sprintf(format, a...)})
	}

	if w.Name == "" {
		bad("Name", "missing: the UFOP name makes the job name ufop-<name>")
	} else if err := ufop.CheckName(w.Name); err != nil {
		bad("Name", "%v", err)
	}
	if w.Version < 1 {
		bad("Version", "want a version number ≥ 1 (the service tag is v<version>), got %d", w.Version)
	}
	if msg := checkImage(w.Image); msg != "" {
		bad("Image", "%s", msg)
	}
	if w.Count < 0 {
		bad("Count", "want 0 or more instances, got %d", w.Count)
	}
	if r := w.Scaling; r != nil {
		switch {
		case r.Min < 0:
			bad("Scaling.Min", "want 0 or more instances, got %d", r.Min)
		case r.Max < 1:
			bad("Scaling.Max", "want at least 1 instance, got %d", r.Max)
		case r.Min > r.Max:
			bad("Scaling", "min %d is over max %d", r.Min, r.Max)
		}
	}
	if w.Port < 1 || w.Port > 65535 {
		bad("Port", "want the port the program listens on in its container (1..65535, normally 9100), got %d", w.Port)
	}
	if w.HealthPath != "" && !healthPath.MatchString(w.HealthPath) {
		bad("HealthPath", "want an HTTP path such as /health (starting with /, no spaces, query or fragment), got %q", w.HealthPath)
	}
	if w.CPUs < 1 {
		bad("CPUs", "want at least 1 core from the flavor, got %d", w.CPUs)
	}
	if w.MemoryMB < MinMemoryMB {
		bad("MemoryMB", "want at least %d MB from the flavor, got %d", MinMemoryMB, w.MemoryMB)
	}
	switch {
	case w.KillTimeout < 0:
		bad("KillTimeout", "want 0 (the default, %s) or more, got %s", ufop.DefaultKillTimeout, w.KillTimeout)
	case o.MaxKillTimeout > 0 && w.KillTimeout > o.MaxKillTimeout:
		bad("KillTimeout", "%s is over the Nomad clients' max_kill_timeout of %s, which would cut it short; raise max_kill_timeout on the clients and Options.MaxKillTimeout", w.KillTimeout, o.MaxKillTimeout)
	}
	for k := range w.Env {
		if k == "" || strings.ContainsAny(k, "= \t\n") {
			bad("Env", "%q is not an environment variable name", k)
		}
	}

	if len(o.Datacenters) == 0 {
		bad("Options.Datacenters", "want at least one datacenter (\"*\" is all)")
	}
	for _, dc := range o.Datacenters {
		if dc == "" {
			bad("Options.Datacenters", "empty datacenter name")
		}
	}
	if o.Canary < NoCanary {
		bad("Options.Canary", "want a count ≥ 1, CanaryAll (0) or NoCanary (-1), got %d", o.Canary)
	}
	if o.AutoPromote && o.Canary == NoCanary {
		bad("Options.AutoPromote", "needs canaries (Canary is NoCanary)")
	}
	if o.PidsLimit < 1 {
		bad("Options.PidsLimit", "want at least 1 (Docker takes 0 as no limit), got %d", o.PidsLimit)
	}
	if o.Network == "host" || o.Network == "none" || o.Network != "" && !networkName.MatchString(o.Network) {
		bad("Options.Network", "want a Docker network name, got %q", o.Network)
	}
	if o.MaxParallel < 1 {
		bad("Options.MaxParallel", "want at least 1 (0 would disable deployments), got %d", o.MaxParallel)
	}
	if o.WarmUp < 0 {
		bad("Options.WarmUp", "want 0 or more, got %s", o.WarmUp)
	}
	if o.HealthyDeadline <= o.WarmUp {
		bad("Options.HealthyDeadline", "want more than WarmUp (%s), got %s", o.WarmUp, o.HealthyDeadline)
	}
	if o.ProgressDeadline != 0 && o.ProgressDeadline <= o.HealthyDeadline {
		bad("Options.ProgressDeadline", "want 0 or more than HealthyDeadline (%s), got %s", o.HealthyDeadline, o.ProgressDeadline)
	}
	if o.ShutdownDelay < 0 {
		bad("Options.ShutdownDelay", "want 0 or more, got %s", o.ShutdownDelay)
	}
	if o.CheckInterval < time.Second {
		bad("Options.CheckInterval", "want at least 1s (Nomad's minimum), got %s", o.CheckInterval)
	}
	if o.CheckTimeout < time.Second || (o.CheckInterval >= time.Second && o.CheckTimeout > o.CheckInterval) {
		bad("Options.CheckTimeout", "want at least 1s and at most CheckInterval (%s), got %s", o.CheckInterval, o.CheckTimeout)
	}
	if o.MaxKillTimeout < 0 {
		bad("Options.MaxKillTimeout", "want 0 (no check) or more, got %s", o.MaxKillTimeout)
	}
	if o.MemoryMaxFactor != 0 && !(o.MemoryMaxFactor >= 1 && o.MemoryMaxFactor <= 64) {
		bad("Options.MemoryMaxFactor", "want 0 (no memory_max) or a factor in [1, 64], got %g", o.MemoryMaxFactor)
	}
	if o.RestartAttempts < 0 {
		bad("Options.RestartAttempts", "want 0 or more, got %d", o.RestartAttempts)
	}
	if o.RestartDelay < 0 {
		bad("Options.RestartDelay", "want 0 or more, got %s", o.RestartDelay)
	}
	if o.RestartInterval <= 0 || time.Duration(o.RestartAttempts)*o.RestartDelay > o.RestartInterval {
		bad("Options.RestartInterval", "want more than RestartAttempts × RestartDelay (%d × %s), got %s", o.RestartAttempts, o.RestartDelay, o.RestartInterval)
	}
	if o.RescheduleDelay <= 0 || o.RescheduleMaxDelay < o.RescheduleDelay {
		bad("Options.RescheduleDelay", "want 0 < RescheduleDelay ≤ RescheduleMaxDelay, got %s and %s", o.RescheduleDelay, o.RescheduleMaxDelay)
	}

	return errors.Join(es...)
}

// checkImage returns what is wrong with a container image reference for
// Nomad, or "". The tag must be explicit and not "latest": the docker
// driver pulls :latest (and untagged) images even with force_pull = false,
// which fails on nodes that cannot reach a registry, and a moving tag
// would make two allocations of one job version run different code.
func checkImage(image string) string {
	if image == "" {
		return "missing: a Nomad UFOP runs the version's container image (process workloads run only on the local orchestrator)"
	}
	if strings.ContainsAny(image, " \t\n") {
		return fmt.Sprintf("%q is not an image reference", image)
	}
	if strings.Contains(image, "@") {
		if !digestRef.MatchString(image) {
			return fmt.Sprintf("%q: want name@sha256:<64 hex digits> for a digest", image)
		}
		return ""
	}
	last := image[strings.LastIndex(image, "/")+1:]
	name, tag, ok := strings.Cut(last, ":")
	switch {
	case name == "":
		return fmt.Sprintf("%q has no repository name", image)
	case !ok || tag == "":
		return fmt.Sprintf("%q has no tag: Nomad would run (and pull) :latest; use the version's tag, e.g. %s:v3", image, image)
	case tag == "latest":
		return fmt.Sprintf("%q uses the tag latest, which Nomad always pulls and which moves; use the version's tag, e.g. v3", image)
	}
	return ""
}
