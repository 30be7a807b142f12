// Package api holds the requests and answers of the management API (/v1):
// package control serves them, package client sends and reads them. It
// imports only the standard library, so that a client of the API does not
// pull in the server's HTTP framework.
//
// Every JSON key is snake_case, as users of Nomad's and Consul's JSON
// expect; durations are Go duration strings ("30s"); instances are
// numbered from 1, as on the command line and in qufopctl.
package api

import "time"

// Build states, with Qiniu's strings (qufopctl imageinfo).
const (
	StateBuilding = "building"
	StateSuccess  = "build success"
	StateFailed   = "build failed"
)

// Error is the body of every error answer, as Qiniu's APIs send it.
type Error struct {
	Code  int    `json:"code"`
	Error string `json:"error"`
}

// WhoAmI is the answer of GET /v1/whoami.
type WhoAmI struct {
	User string `json:"user"`
}

// RegisterRequest is the body of POST /v1/ufops.
type RegisterRequest struct {
	Name        string `json:"name"`
	Mode        string `json:"mode"` // private (2, the default) or public (1)
	Description string `json:"description"`
}

// UFOP is a registered UFOP (POST and GET /v1/ufops, GET /v1/ufops/NAME).
// Another user's public UFOP shows only its name, mode and description.
type UFOP struct {
	Name         string    `json:"name"`
	Owner        string    `json:"owner,omitempty"`
	Mode         string    `json:"mode"`
	Description  string    `json:"description"`
	CreatedAt    time.Time `json:"created_at,omitzero"`
	Versions     []Version `json:"versions,omitempty"`
	Current      int       `json:"current"`  // version chosen with chver; 0: none
	Deployed     int       `json:"deployed"` // version the instances run; 0: none
	Desired      int       `json:"desired"`  // instance count asked for
	MaxInstances int       `json:"max_instances,omitempty"`
	// Flavor is the flavor in the ufop.yaml of the version the instances
	// run (else the current one, else the newest build); empty before the
	// first upload.
	Flavor string `json:"flavor,omitempty"`
	// ScalePolicy is the scaler's policy, its defaults filled in; absent:
	// manual counts (resize only).
	ScalePolicy *ScalePolicy `json:"scale_policy,omitempty"`
	// ScaleHistory is the last changes of the instance count (at most 20),
	// oldest first, whoever made them.
	ScaleHistory []ScaleEvent `json:"scale_history,omitempty"`
}

// ScalePolicy is how the scaler sizes a UFOP: the body of PUT
// /v1/ufops/NAME/scale-policy, and in the UFOP. A duration left empty (or
// "0s") takes its default: interval 2s, up_cooldown 2s, down_cooldown 15s,
// down_window 30s.
type ScalePolicy struct {
	Min int `json:"min"`
	Max int `json:"max"`
	// Target is the work one healthy instance should carry: steps waiting
	// in the UFOP's queue plus steps in flight at its instances.
	Target float64 `json:"target"`
	// Interval is how often the scaler evaluates the UFOP.
	Interval string `json:"interval,omitempty"`
	// UpCooldown and DownCooldown are the quiet times after a change of
	// count before the next change up, or down.
	UpCooldown   string `json:"up_cooldown,omitempty"`
	DownCooldown string `json:"down_cooldown,omitempty"`
	// DownWindow is the scale-down stabilisation window: the count goes
	// down only to the highest count wanted during the window.
	DownWindow string `json:"down_window,omitempty"`
}

// Who changed a count (ScaleEvent.By).
const (
	ByScaler = "scaler"
	ByUser   = "user"
)

// ScaleEvent is one change of a UFOP's instance count, or one the scaler
// wanted and the orchestrator declined for now (Skipped).
type ScaleEvent struct {
	Time time.Time `json:"time"`
	From int       `json:"from"`
	To   int       `json:"to"`
	By   string    `json:"by"`             // ByScaler or ByUser
	User string    `json:"user,omitempty"` // who, when By is ByUser
	// The figures behind a scaler's decision: steps waiting, steps in
	// flight, and the healthy capacity (sum of concurrency).
	Pending  float64 `json:"pending"`
	InFlight float64 `json:"in_flight"`
	Capacity float64 `json:"capacity"`
	Reason   string  `json:"reason,omitempty"`
	// Skipped: the orchestrator declined (an active deployment); Repeats
	// counts the same skip seen again since.
	Skipped bool `json:"skipped,omitempty"`
	Repeats int  `json:"repeats,omitempty"`
}

// ScalePolicySet is the answer of PUT and DELETE
// /v1/ufops/NAME/scale-policy: 202 when an operation started (follow it
// with the state), 200 when the record alone changed.
type ScalePolicySet struct {
	Name string `json:"name"`
	// Policy is the policy now in force, defaults filled in; absent:
	// manual counts.
	Policy *ScalePolicy `json:"policy,omitempty"`
	// From and To are the instance count before and after (To is From
	// clamped into [min, max]).
	From int `json:"from"`
	To   int `json:"to"`
	// Version is the version deployed, or redeployed to carry the new
	// range to the orchestrator; 0 when nothing was started.
	Version int `json:"version,omitempty"`
	// Message says what was done, or why nothing was.
	Message string `json:"message,omitempty"`
}

// Version is one uploaded build of a UFOP.
type Version struct {
	Version     int       `json:"version"`
	State       string    `json:"state"` // StateBuilding, StateSuccess or StateFailed
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	// Image is the pushed image (Docker builds), Dir the built folder
	// (process builds).
	Image string `json:"image,omitempty"`
	Dir   string `json:"dir,omitempty"`
	Spec  *Spec  `json:"spec,omitempty"`
	Error string `json:"error,omitempty"`
}

// Spec is a version's ufop.yaml with the platform's defaults filled in.
type Spec struct {
	Image       string            `json:"image"`
	BuildScript []string          `json:"build_script,omitempty"`
	Run         string            `json:"run"`
	Protocol    string            `json:"protocol"`
	Health      string            `json:"health,omitempty"` // empty: ready when the port accepts
	Env         map[string]string `json:"env,omitempty"`
	Flavor      string            `json:"flavor"`
	Concurrency int               `json:"concurrency"`
	Timeout     string            `json:"timeout"`
	KillTimeout string            `json:"kill_timeout"`
}

// Uploaded is the answer of POST /v1/ufops/NAME/versions (202): the
// version is building.
type Uploaded struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	State   string `json:"state"`
}

// VersionRequest is the body of PUT /v1/ufops/NAME/current.
type VersionRequest struct {
	Version int `json:"version"`
}

// ResizeRequest is the body of PUT /v1/ufops/NAME/instances.
type ResizeRequest struct {
	Count int `json:"count"`
}

// Resized is the answer of a resize: 202 when an operation started (follow
// it with the state), 200 when there was nothing to do.
type Resized struct {
	Name    string `json:"name"`
	From    int    `json:"from"`
	To      int    `json:"to"`
	Version int    `json:"version,omitempty"`
}

// Upgraded is the answer of POST /v1/ufops/NAME/upgrade: 202 when the
// upgrade started, 200 with Message when there was nothing to do.
type Upgraded struct {
	Name    string `json:"name"`
	From    int    `json:"from"`
	To      int    `json:"to"`
	Version int    `json:"version,omitempty"`
	Message string `json:"message,omitempty"`
}

// Unregistered is the answer of DELETE /v1/ufops/NAME.
type Unregistered struct {
	Name    string `json:"name"`
	Deleted bool   `json:"deleted"`
	// Removed lists the images (or built folders) removed, Kept those kept
	// because another UFOP's version builds on them.
	Removed []string `json:"removed"`
	Kept    []Kept   `json:"kept,omitempty"`
	// Warnings are removals that failed; the UFOP is deleted anyway.
	Warnings []string `json:"warnings,omitempty"`
}

// Kept is a build kept by unreg, and why.
type Kept struct {
	Artifact string `json:"artifact"`
	Reason   string `json:"reason"`
}

// State is the answer of GET /v1/ufops/NAME/instances.
type State struct {
	Name      string     `json:"name"`
	Desired   int        `json:"desired"`
	Deployed  int        `json:"deployed"`
	Current   int        `json:"current"`
	Instances []Instance `json:"instances"`
	Operation *Operation `json:"operation,omitempty"`
}

// Instance is one instance of a UFOP.
type Instance struct {
	// Index numbers the instance from 1 (qufop state -index, qufop logs
	// -index, GET .../instances/INDEX/log).
	Index   int    `json:"index"`
	ID      string `json:"id"`
	Version int    `json:"version"`
	State   string `json:"state"` // starting, running, stopping, failed, exited
	Healthy bool   `json:"healthy"`
	// The instance's addresses, each named for what it is. BridgeAddr: a
	// container on the platform's own bridge network, where the gateway
	// reaches it. HostAddr: a port on the platform's machine (a process, or
	// a container's port published on 127.0.0.1). NodeAddr: a Nomad
	// client's address and the allocation's port.
	BridgeAddr string    `json:"bridge_addr,omitempty"`
	HostAddr   string    `json:"host_addr,omitempty"`
	NodeAddr   string    `json:"node_addr,omitempty"`
	Restarts   int       `json:"restarts"`
	Message    string    `json:"message,omitempty"`
	Started    time.Time `json:"started,omitzero"`
}

// Operation is the last resize, upgrade, change of scale policy or unreg of a
// UFOP, run in the background.
type Operation struct {
	Kind     string    `json:"kind"` // "resize", "upgrade", "scale-policy" or "unreg"
	Version  int       `json:"version"`
	Count    int       `json:"count"`
	Started  time.Time `json:"started"`
	Done     bool      `json:"done"`
	Error    string    `json:"error,omitempty"`
	Finished time.Time `json:"finished,omitzero"`
}
