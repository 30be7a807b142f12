// Package cluster names the roles the platform needs from the machines it
// runs on: an Orchestrator that runs UFOP instances, a Catalog that knows
// which of them are healthy, and a KV that holds the platform's state.
// Implementations live in sub-packages: cluster/local (the embedded default:
// Docker containers or plain processes, a file KV), cluster/nomad (the
// Orchestrator on Nomad) and cluster/consul (Catalog and KV on Consul).
package cluster

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned (wrapped) for a key, workload or instance that does
// not exist.
var ErrNotFound = errors.New("not found")

// ErrSkipped is returned (wrapped) when an orchestrator declines a change
// that is not a failure: Nomad refuses to scale during an active deployment,
// and the scaler then skips this round.
var ErrSkipped = errors.New("skipped")

// KV is the platform's state store (the "Keeper" lives on it). Every
// read-modify-write goes through CAS.
// KeyLister is a KV that lists keys without their values, which is far
// cheaper than List when only the names are wanted (Consul's ?keys).
type KeyLister interface {
	// Keys returns the keys that start with prefix, sorted.
	Keys(ctx context.Context, prefix string) ([]string, error)
}

type KV interface {
	// Get returns the value at key and its modify index, or ErrNotFound.
	Get(ctx context.Context, key string) (val []byte, index uint64, err error)
	// CAS writes val at key if the key's modify index is still index;
	// index 0 means the key must not exist yet. ok is false when another
	// writer won the race (re-read and retry).
	CAS(ctx context.Context, key string, val []byte, index uint64) (ok bool, err error)
	// List returns the pairs whose keys start with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Pair, error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// Pair is one KV entry.
type Pair struct {
	Key   string
	Value []byte
	Index uint64
}

// Workload is one version of a UFOP to run: everything an orchestrator needs
// to start its instances. It is rendered into containers (local), or into
// Nomad job "ufop-<Name>" (cluster/nomad).
type Workload struct {
	Name    string // UFOP name
	Owner   string
	Version int
	// Image is the container image ("127.0.0.1:5000/admin/demo:v3"). Empty
	// for a process workload.
	Image string
	// Dir is the unpacked build of a process workload (no Docker): Run is
	// started there.
	Dir string
	// Run is the start command, run by /bin/sh -c.
	Run  string
	Env  map[string]string
	Port int // port the program listens on in its container (9100)
	// HealthPath is the HTTP path that answers 200 when the instance is
	// ready. Empty: ready when the port accepts connections (Qiniu v1
	// programs have no health endpoint); for Protocol "uop" a local
	// orchestrator also counts any HTTP answer to a probe as alive.
	HealthPath string
	// Protocol is how the gateway calls the instance: "uop" (POST /uop
	// JSON) or "handler" (POST /handler?cmd=&url=).
	Protocol    string
	CPUs        int // cores
	MemoryMB    int
	Count       int
	KillTimeout time.Duration // SIGTERM, then SIGKILL after this
	// Scaling, when set, is the range the scaler keeps Count in; Nomad
	// gets it as the group's scaling block and refuses counts outside it.
	Scaling *Scaling
}

// Scaling is the range of a workload's count.
type Scaling struct {
	Min, Max int
}

// Instance is one running (or starting, or failed) copy of a workload.
type Instance struct {
	Index   int    // 0-based, stable for the life of the instance slot
	ID      string // container or process id
	Version int
	State   string // "starting", "running", "stopping", "failed", "exited"
	Healthy bool
	Addr    string // host:port the gateway reaches it at
	// AddrKind says which address Addr is: "bridge" (a container on the
	// platform's own network), "host" (a port on this machine) or "node"
	// (a Nomad client's address and allocated port).
	AddrKind string
	// PublishedAddr is where a person on the machine reaches the instance
	// when that differs from Addr (a container port published on
	// 127.0.0.1); empty otherwise.
	PublishedAddr string
	Restarts      int
	Message       string // last event or error, for `qufop state`
	Started       time.Time
}

// Orchestrator runs the instances of workloads.
type Orchestrator interface {
	// Deploy runs w.Count instances of w.Version. Instances of any other
	// version of the same UFOP are replaced: the new ones start, and the old
	// ones stop (gracefully) once the new ones are healthy.
	Deploy(ctx context.Context, w Workload) error
	// Scale sets the instance count of the UFOP's running version; reason
	// and meta (the figures behind a scaler's decision) are recorded where
	// the orchestrator keeps history (Nomad's scaling events). It returns
	// an error wrapping ErrNotFound if nothing was deployed, ErrSkipped if
	// the orchestrator declines for now (an active deployment).
	Scale(ctx context.Context, name string, count int, reason string, meta map[string]string) error
	// Instances reports every instance of the UFOP, all versions, by index.
	Instances(ctx context.Context, name string) ([]Instance, error)
	// Stop stops every instance gracefully; purge also forgets the workload.
	Stop(ctx context.Context, name string, purge bool) error
	// Logs writes the output (stdout and stderr) of instance index; with
	// follow it streams until ctx ends.
	Logs(ctx context.Context, name string, index int, follow bool, w io.Writer) error
}

// Load is what the gateway knows of the work at each instance. The local
// orchestrator asks it, on scale-in, which instances are the least busy and
// when the ones leaving have finished their steps.
type Load interface {
	// InFlight returns the steps in flight at each instance of the UFOP,
	// by Endpoint.ID; instances with none may be missing.
	InFlight(name string) map[string]int
}

// Endpoint is a healthy instance as the gateway sees it.
type Endpoint struct {
	ID      string
	Addr    string // host:port
	Version int
}

// Catalog finds healthy instances. Healthy must answer from memory, with no
// network call: the gateway asks on every request.
type Catalog interface {
	Healthy(name string) []Endpoint
}
