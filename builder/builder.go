// Package builder turns a UFOP tarball (with its ufop.yaml) into something
// that can run: through the Docker Engine API, an image tagged
// <registry>/[<namespace>/]<owner>/<name>:v<N> and pushed to the configured
// registry; where no Docker daemon answers, an unpacked folder whose run
// command is started as a plain process. Process mode isolates nothing: the
// UFOP's build script and program run with the platform's own user, file
// system and network.
//
// Images are not built from a Dockerfile: the classic builder (the only one
// here, no BuildKit) stores a file once per layer that holds it, and a
// Dockerfile needs a layer to add the tarball, one per build_script line and
// one to remove the tarball, so a program moved out of $RESOURCE was stored
// three times. Instead the build script runs in one container, whose diff
// is committed as the image's single new layer (see Docker.Build).
//
// Remove takes a built version away again (qufop unreg).
//
// A Builder bounds concurrent builds and their duration; tarballs are
// checked before anything is unpacked from them (see Unpack).
package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"time"

	"github.com/docker/docker/client"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/ufop"
)

// Build states, as qufopctl reports them.
const (
	StateBuilding = "building"
	StateSuccess  = "build success"
	StateFailed   = "build failed"
)

// Job is one build: version Version of UFOP Name of Owner, from a tarball
// given as a stream or a file path.
type Job struct {
	Owner   string
	Name    string
	Version int
	Tarball io.Reader
	// TarballPath is read when Tarball is nil.
	TarballPath string
}

// Result is a finished build.
type Result struct {
	Image string     // image reference (Docker backend)
	Spec  *ufop.Spec // the tarball's ufop.yaml
	Dir   string     // the built app folder (process backend)
}

// Backend builds one job; the Docker and process backends implement it.
type Backend interface {
	Build(ctx context.Context, job Job, log io.Writer) (Result, error)
	// Remove removes one built artifact: a Result.Image (Docker) or a
	// Result.Dir (process). A missing artifact is no error.
	Remove(ctx context.Context, artifact string) error
	// Mode is "docker" or "process".
	Mode() string
}

// Builder runs builds on a backend, at most cfg.MaxConcurrent at once and
// each within cfg.Timeout.
type Builder struct {
	cfg     Config
	backend Backend
	sem     chan struct{}
	logs    *LogStore
}

// New returns a Builder on backend.
func New(cfg Config, backend Backend) (*Builder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if backend == nil {
		return nil, errors.New("builder: no backend")
	}
	return &Builder{
		cfg:     cfg,
		backend: backend,
		sem:     make(chan struct{}, cfg.MaxConcurrent),
		logs:    NewLogStore(cfg.Dir),
	}, nil
}

// Mode is the backend's mode.
func (b *Builder) Mode() string { return b.backend.Mode() }

// Logs is the store of build logs under cfg.Dir/logs.
func (b *Builder) Logs() *LogStore { return b.logs }

// Build runs job once a slot is free (waiting ends with ctx) and within the
// configured timeout. The log gets the build's output.
func (b *Builder) Build(ctx context.Context, job Job, log io.Writer) (Result, error) {
	if err := job.check(); err != nil {
		return Result{}, err
	}
	if log == nil {
		log = io.Discard
	}
	select {
	case b.sem <- struct{}{}:
	case <-ctx.Done():
		return Result{}, fmt.Errorf("waiting for a build slot: %w", ctx.Err())
	}
	defer func() { <-b.sem }()

	tctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	start := time.Now()
	res, err := b.backend.Build(tctx, job, log)
	if err != nil && ctx.Err() == nil && errors.Is(tctx.Err(), context.DeadlineExceeded) {
		err = errs.Wrap(http.StatusGatewayTimeout, err, "build timed out after %s", b.cfg.Timeout)
	}
	if err != nil {
		fmt.Fprintf(log, "qufop: %s after %s: %v\n", StateFailed, time.Since(start).Round(time.Millisecond), err)
		return Result{}, err
	}
	fmt.Fprintf(log, "qufop: %s in %s\n", StateSuccess, time.Since(start).Round(time.Millisecond))
	return res, nil
}

// Remove removes one artifact of a build (Result.Image or Result.Dir, as
// the backend made it), for qufop unreg; removing what is already gone is
// no error. It does not wait for a build slot. The caller keeps the
// versions that other UFOPs build on; the Docker backend also leaves such a
// base in the daemon for the images built on it (see Docker.Remove).
func (b *Builder) Remove(ctx context.Context, artifact string) error {
	if artifact == "" {
		return errs.BadRequest("no artifact to remove")
	}
	return b.backend.Remove(ctx, artifact)
}

var nameRe = regexp.MustCompile(`^[a-z0-9]+(?:[._-][a-z0-9]+)*$`)

// checkName accepts names that are both a path component and a component of
// an image reference.
func checkName(what, s string) error {
	if len(s) > 64 || !nameRe.MatchString(s) {
		return errs.BadRequest("bad %s %q: want lower-case letters, digits and . _ - inside", what, s)
	}
	return nil
}

func (j Job) check() error {
	if err := checkName("owner", j.Owner); err != nil {
		return err
	}
	if err := checkName("ufop name", j.Name); err != nil {
		return err
	}
	if j.Version < 1 {
		return errs.BadRequest("bad version %d", j.Version)
	}
	if j.Tarball == nil && j.TarballPath == "" {
		return errs.BadRequest("no tarball")
	}
	return nil
}

// open returns the job's tarball stream.
func (j Job) open() (io.ReadCloser, error) {
	if j.Tarball != nil {
		return io.NopCloser(j.Tarball), nil
	}
	return os.Open(j.TarballPath)
}

// Detect picks the Docker backend when a daemon answers a Ping, else the
// process backend. The string says which, and for process mode warns that
// it isolates nothing.
func Detect(ctx context.Context, cfg Config) (Backend, string, error) {
	if err := cfg.Validate(); err != nil {
		return nil, "", err
	}
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = c.Ping(pctx)
		cancel()
		if err == nil {
			return NewDocker(cfg, c), "docker", nil
		}
		c.Close()
	}
	return NewProcess(cfg), fmt.Sprintf("process (WARNING: no Docker daemon answers: %v; UFOPs are built and run as plain processes, and process mode isolates nothing)", err), nil
}
