package local

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/qufop/qufop/dispatch"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/ufop"
)

// An instance that takes more memory than its flavor's limit is killed by
// the kernel, reported as such (the state's message, as `qufop state`
// shows it) and restarted.
func TestDockerOOMKilled(t *testing.T) {
	cli, img, pid := dockerSetup(t)
	ctx := context.Background()
	d := newDocker(t, cli, pid, testOptions())
	w := dockerWorkload(img, "hungry", 1, 1)
	w.Run = isoRun
	w.MemoryMB = 16
	if err := d.Deploy(ctx, w); err != nil {
		t.Fatal(err)
	}
	// The shell, PID 1, reads 100 MB into a variable.
	dockerExec(t, cli, ContainerName(pid, "hungry", 1, 0), "touch", "/tmp/eat")
	want := "killed: out of memory (limit 16 MiB)"
	var seen []string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("messages seen: %q", seen)
		}
	})
	waitFor(t, patience, "the instance reported out of memory, restarted and healthy", func() bool {
		in := instances(t, d, "hungry")[0]
		if len(seen) == 0 || seen[len(seen)-1] != in.Message {
			seen = append(seen, in.Message)
		}
		return in.Restarts == 1 && in.Healthy && strings.Contains(in.Message, "last restart: "+want)
	})
	info, err := cli.ContainerInspect(ctx, ContainerName(pid, "hungry", 1, 0))
	if err != nil || info.State == nil || !info.State.Running {
		t.Fatalf("container after the restart: %v", err)
	}
	t.Logf("messages: %q", seen)
}

// eatRun is a handler-protocol UFOP in busybox: a persistent nc server
// answers GET /health (once it has read the request's header: closing
// with unread data would reset the connection), and a step (POST /handler) makes the shell, PID 1,
// read 100 MB into a variable while the step waits for its answer.
const eatRun = `printf '%s\n' '#!/bin/sh' 'read -r line' 'while read -r h; do [ "${#h}" -le 1 ] && break; done' ` +
	`'case "$line" in *" /health"*) printf "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n";; *) touch /tmp/eat; sleep 60;; esac' > /tmp/h.sh && ` +
	`nc -ll -p 9100 -e /bin/sh /tmp/h.sh & ` +
	`while [ ! -f /tmp/eat ]; do sleep 0.1; done; x=$(head -c 100000000 /dev/zero | tr '\000' a); echo "ate ${#x}"; exit 4`

type oneRecord struct{ rec *ufop.Record }

func (o oneRecord) Get(_ context.Context, name string) (*ufop.Record, error) {
	if name != o.rec.Name {
		return nil, nil
	}
	return o.rec, nil
}

// A step whose instance is killed for exceeding its memory gets a 599 that
// says so (not just "instance died").
func TestDockerOOMStep599(t *testing.T) {
	cli, img, pid := dockerSetup(t)
	ctx := context.Background()
	d := newDocker(t, cli, pid, testOptions())
	w := dockerWorkload(img, "hungry", 1, 1)
	w.Run = eatRun
	w.MemoryMB = 16
	if err := d.Deploy(ctx, w); err != nil {
		t.Fatal(err)
	}
	rec := &ufop.Record{Name: "hungry", Owner: "admin", Mode: ufop.Public, Deployed: 1, Versions: []ufop.Version{{
		N: 1, State: ufop.BuildSuccess,
		Spec: &ufop.Spec{Protocol: ufop.ProtocolHandler, Concurrency: 1, Timeout: patience},
	}}}
	disp := dispatch.New(dispatch.NewDefaultConfig(), oneRecord{rec}, d, nil)
	cmd := fop.Cmd{Name: "hungry", Raw: "hungry", Index: 1}
	p, err := disp.Resolve(ctx, cmd, "admin")
	if err != nil || p == nil {
		t.Fatalf("resolve: %v %v", p, err)
	}
	sctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	_, err = p.Process(sctx, cmd, fop.Blob{Data: []byte("x"), MIME: "text/plain"})
	var e *errs.Error
	if !errors.As(err, &e) || errs.Status(err) != errs.StatusProcessingFailed || !strings.Contains(e.Msg, "killed: out of memory (limit 16 MiB)") {
		t.Fatalf("step: status %d, %v; want a 599 saying the instance ran out of memory", errs.Status(err), err)
	}
	t.Logf("step error: %v", err)
	waitFor(t, patience, "the instance restarted and healthy", func() bool {
		in := instances(t, d, "hungry")[0]
		return in.Restarts == 1 && in.Healthy
	})
}
