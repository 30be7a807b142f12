package nomad

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/nomad/api"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/jobspecs"
)

// Logs implements cluster.Orchestrator. It reads the task's logs as `nomad
// alloc logs` does, through the client FS API (the server forwards to the
// node when the node is not reachable directly), from their start, as the
// local orchestrator shows a container's whole log. Without follow it
// writes stdout, then stderr; with follow it streams both at once, a frame
// at a time, until ctx ends (then it returns nil).
func (o *Orchestrator) Logs(ctx context.Context, name string, index int, follow bool, w io.Writer) error {
	a, err := o.pick(ctx, name, index)
	if err != nil {
		return err
	}
	alloc := &api.Allocation{ID: a.ID, NodeID: a.NodeID, Namespace: a.Namespace, Name: a.Name}
	if !follow {
		for _, typ := range []string{api.FSLogNameStdout, api.FSLogNameStderr} {
			if err := o.stream(ctx, alloc, typ, false, w); err != nil {
				return err
			}
		}
		return nil
	}
	return o.followBoth(ctx, alloc, w)
}

// pick is the allocation of instance index, as Instances numbers them: of
// the job's current version when there is one at that index (a canary
// during an upgrade), else the newest.
func (o *Orchestrator) pick(ctx context.Context, name string, index int) (*api.AllocationListStub, error) {
	id := JobID(name)
	cur, allocs, err := o.live(ctx, id)
	if err != nil {
		return nil, err
	}
	var best *api.AllocationListStub
	for _, a := range allocs {
		if allocIndex(a) == index && (best == nil || newer(a, best, cur)) {
			best = a
		}
	}
	if best == nil {
		return nil, fmt.Errorf("nomad: instance %s[%d]: %w", id, index, cluster.ErrNotFound)
	}
	return best, nil
}

func newer(a, b *api.AllocationListStub, cur *api.Job) bool {
	if cur != nil && cur.Version != nil && (a.JobVersion == *cur.Version) != (b.JobVersion == *cur.Version) {
		return a.JobVersion == *cur.Version
	}
	return a.CreateIndex > b.CreateIndex
}

// followBoth follows stdout and stderr at once; the first error stops
// both.
func (o *Orchestrator) followBoth(ctx context.Context, alloc *api.Allocation, w io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sw := &syncWriter{w: w}
	errc := make(chan error, 2)
	for _, typ := range []string{api.FSLogNameStdout, api.FSLogNameStderr} {
		go func() { errc <- o.stream(ctx, alloc, typ, true, sw) }()
	}
	var first error
	for range 2 {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// stream copies one log ("stdout" or "stderr") of the allocation's task to
// w from its start; with follow it goes on until ctx ends, and then
// returns nil.
func (o *Orchestrator) stream(ctx context.Context, alloc *api.Allocation, typ string, follow bool, w io.Writer) error {
	// The request ends with this call, whichever way it returns: the api
	// client's reader goroutine stops once its request is cancelled.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	cancel := make(chan struct{})
	defer close(cancel)
	frames, errc := o.client.AllocFS().Logs(alloc, follow, jobspecs.TaskName, typ, api.OriginStart, 0, cancel, o.q(ctx))
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				return nil
			}
			if _, err := w.Write(f.Data); err != nil {
				go drain(frames, errc)
				return err
			}
		case err := <-errc:
			if ctx.Err() != nil {
				return ended(ctx, follow)
			}
			return classify(err, fmt.Sprintf("nomad: %s of %s", typ, alloc.Name))
		case <-ctx.Done():
			go drain(frames, errc)
			return ended(ctx, follow)
		}
	}
}

// ended is what stream returns when ctx ended: the normal end of a
// follow, an error otherwise.
func ended(ctx context.Context, follow bool) error {
	if follow {
		return nil
	}
	return ctx.Err()
}

// drain reads what the api client's reader goroutine still sends after
// stream stopped reading, so that it is not left blocked on a full
// channel: it either closes frames or sends one error when it ends.
func drain(frames <-chan *api.StreamFrame, errc <-chan error) {
	for {
		select {
		case _, ok := <-frames:
			if !ok {
				return
			}
		case <-errc:
			return
		}
	}
}

// syncWriter lets the stdout and stderr followers write whole frames to
// one writer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
