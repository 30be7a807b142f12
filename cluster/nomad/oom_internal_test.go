package nomad

import (
	"strings"
	"testing"

	"github.com/hashicorp/nomad/api"
)

// A task the kernel killed for its memory shows so in the instance's
// message, also once Nomad has restarted it (its last event is then the
// restart's), as on the embedded default.
func TestInstanceOOMKilled(t *testing.T) {
	terminated := &api.TaskEvent{Type: api.TaskTerminated, Time: 10, DisplayMessage: `Exit Code: 137, Exit Message: "OOM Killed"`,
		Details: map[string]string{"exit_code": "137", "oom_killed": "true"}}
	crashed := &api.TaskEvent{Type: api.TaskTerminated, Time: 10, DisplayMessage: "Exit Code: 3",
		Details: map[string]string{"exit_code": "3", "oom_killed": "false"}}
	restarting := &api.TaskEvent{Type: api.TaskRestarting, Time: 11, DisplayMessage: "Task restarting in 15s"}
	started := &api.TaskEvent{Type: api.TaskStarted, Time: 12, DisplayMessage: "Task started by client"}
	for _, c := range []struct {
		name   string
		events []*api.TaskEvent
		want   string // in the message
		oom    bool
	}{
		{"just killed", []*api.TaskEvent{started, terminated}, "killed: out of memory", true},
		{"restarting", []*api.TaskEvent{terminated, restarting}, "killed: out of memory", true},
		{"restarted", []*api.TaskEvent{terminated, restarting, started}, "last restart: killed: out of memory", true},
		{"crashed", []*api.TaskEvent{crashed, restarting, started}, "Task started by client", false},
		{"an OOM kill before a crash", []*api.TaskEvent{terminated, restarting, started, {Type: api.TaskTerminated, Time: 20, DisplayMessage: "Exit Code: 3", Details: map[string]string{"oom_killed": "false"}}}, "Exit Code: 3", false},
	} {
		a := &api.AllocationListStub{ID: "a1", Name: "ufop-x.ufop[0]", DesiredStatus: api.AllocDesiredStatusRun, ClientStatus: api.AllocClientStatusRunning,
			TaskStates: map[string]*api.TaskState{"ufop": {State: "running", Events: c.events}}}
		got := instance(a, 1).Message
		if !strings.Contains(got, c.want) || strings.Contains(got, "out of memory") != c.oom {
			t.Errorf("%s: message %q, want %q (out of memory: %v)", c.name, got, c.want, c.oom)
		}
	}
}
