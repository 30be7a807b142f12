package builder

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/strslice"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/ufop"
)

// BuildError is a build_script line that failed.
type BuildError struct {
	Line     int    // 1-based index in build_script
	Cmd      string // the line as written
	ExitCode int    // -1 when unknown
	Detail   string // the daemon's or the shell's message
}

func (e *BuildError) Error() string {
	if e.ExitCode >= 0 {
		return fmt.Sprintf("build_script line %d (%q) failed: exit code %d", e.Line, e.Cmd, e.ExitCode)
	}
	return fmt.Sprintf("build_script line %d (%q) failed: %s", e.Line, e.Cmd, e.Detail)
}

// HTTPStatus makes a failing build script the user's error (see errs).
func (e *BuildError) HTTPStatus() int { return 400 }

// Docker builds images through the Docker Engine API.
type Docker struct {
	cfg Config
	c   *client.Client
	reg *registryClient
}

// NewDocker returns the Docker backend on client c (made with
// client.WithAPIVersionNegotiation()).
func NewDocker(cfg Config, c *client.Client) *Docker {
	return &Docker{cfg: cfg, c: c, reg: newRegistryClient(cfg.Registry)}
}

// Mode is "docker".
func (d *Docker) Mode() string { return "docker" }

// emptyAuth is base64("{}"): the test registry needs no credentials.
var emptyAuth = base64.URLEncoding.EncodeToString([]byte("{}"))

// Build unpacks the tarball under cfg.Dir, builds the image and tags it
// cfg.Tag(owner, name, version), and pushes it to the registry.
//
// The image is made without a Dockerfile, the way docker commit workflows
// do: a container of the base image runs RenderBuildScript as root with the
// unpacked tarball copied in at $RESOURCE, and its file-system diff is
// committed with the UFOP's configuration. So the image has exactly one
// layer more than its base, holding only what the build left: the resource
// is added, used and removed within that layer and leaves no trace in it
// (with a Dockerfile, the COPY, each RUN and the clean-up would each be a
// layer, and a program moved out of $RESOURCE would be stored three times).
// No build cache is involved, so builds never depend on intermediate images
// that other builds or tests may delete. The build container is removed in
// every case, and a build that fails after its commit removes its tag.
func (d *Docker) Build(ctx context.Context, job Job, log io.Writer) (Result, error) {
	if err := job.check(); err != nil {
		return Result{}, err
	}
	if log == nil {
		log = io.Discard
	}
	tag := d.cfg.Tag(job.Owner, job.Name, job.Version)
	fmt.Fprintf(log, "qufop: %s %s\n", StateBuilding, tag)
	if err := os.MkdirAll(d.cfg.Dir, 0o755); err != nil {
		return Result{}, err
	}
	work, err := os.MkdirTemp(d.cfg.Dir, fmt.Sprintf("build-%s-%s-v%d-", job.Owner, job.Name, job.Version))
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(work)

	tb, err := job.open()
	if err != nil {
		return Result{}, errs.Wrap(400, err, "cannot read the tarball")
	}
	resource := filepath.Join(work, "resource")
	spec, err := Unpack(ctx, tb, resource, d.cfg.Limits())
	tb.Close()
	if err != nil {
		return Result{}, err
	}
	fmt.Fprintf(log, "qufop: tarball unpacked; image %s, %d build_script line(s)\n", spec.Image, len(spec.BuildScript))

	base, err := d.cfg.ResolveBase(spec.Image, job.Owner)
	if err != nil {
		return Result{}, err
	}
	baseInfo, err := d.ensureBase(ctx, base, log)
	if err != nil {
		return Result{}, err
	}
	script, err := RenderBuildScript(spec, d.cfg.User)
	if err != nil {
		return Result{}, err
	}
	conf := imageConfig(spec, baseInfo, d.cfg, job)
	b := &dockerBuild{d: d, job: job, spec: spec, base: base, tag: tag, log: log}
	defer b.removeContainer(ctx)
	if err := b.run(ctx, script, resource, maps.Clone(conf.Labels)); err != nil {
		return Result{}, ctxErr(ctx, err)
	}
	ok := false
	defer func() {
		if !ok {
			b.untag(ctx)
		}
	}()
	if err := b.commit(ctx, conf); err != nil {
		return Result{}, ctxErr(ctx, err)
	}
	fmt.Fprintf(log, "qufop: built %s\n", tag)

	if d.cfg.Registry == "" {
		fmt.Fprintf(log, "qufop: no registry configured; %s is not pushed\n", tag)
	} else if err := d.push(ctx, tag, log); err != nil {
		return Result{}, ctxErr(ctx, err)
	}
	ok = true
	return Result{Image: tag, Spec: spec}, nil
}

// imageConfig is the configuration of the built image: the program runs
// as cfg.User in AppDir with the spec's environment (after PORT_HTTP and
// before HOME, which the platform sets), its run command under /bin/sh -c
// and the labels. docker commit fills in from the build container what is
// left empty: the base's other variables (PATH), exposed ports, volumes
// and health check, as a Dockerfile's FROM would; the base's entrypoint is
// kept explicitly, since the build container runs without one.
func imageConfig(spec *ufop.Spec, base *image.InspectResponse, cfg Config, job Job) *container.Config {
	env := []string{"PORT_HTTP=" + strconv.Itoa(Port)}
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		if k != "HOME" {
			env = append(env, k+"="+spec.Env[k])
		}
	}
	env = append(env, "HOME="+HomeDir)
	labels := map[string]string{}
	maps.Copy(labels, cfg.Labels)
	labels["qufop.ufop"] = job.Name
	labels["qufop.owner"] = job.Owner
	labels["qufop.version"] = strconv.Itoa(job.Version)
	entry := strslice.StrSlice{} // not nil: an empty entrypoint is not filled in from the container
	if base != nil && base.Config != nil && len(base.Config.Entrypoint) > 0 {
		entry = base.Config.Entrypoint
	}
	return &container.Config{
		User:         cfg.User,
		Env:          env,
		WorkingDir:   AppDir,
		ExposedPorts: nat.PortSet{nat.Port(strconv.Itoa(Port) + "/tcp"): {}},
		StopSignal:   "SIGTERM",
		Entrypoint:   entry,
		Cmd:          strslice.StrSlice{"/bin/sh", "-c", spec.Run},
		Labels:       labels,
	}
}

// buildEnv is the environment of the build container: what ends up in the
// image, but not HOME (root's during the build, as in a Dockerfile's RUN).
// $RESOURCE is exported by the build script, so that it does not reach the
// image's configuration (docker commit keeps the container's variables).
func buildEnv(spec *ufop.Spec) []string {
	env := []string{"PORT_HTTP=" + strconv.Itoa(Port)}
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		env = append(env, k+"="+spec.Env[k])
	}
	return env
}

// buildContainerPrefix starts the names of build containers.
const buildContainerPrefix = "qufop-build-"

// buildContainerName is the name of a build container, but its random end:
// qufop-build-[<namespace>-]<owner>-<name>-v<N>-. Build containers also
// carry the image's labels (cfg.Labels, the platform's id among them), which
// docker commit would copy to the image in any case.
func (c Config) buildContainerName(owner, name string, version int) string {
	ns := ""
	if c.Namespace != "" {
		ns = c.Namespace + "-"
	}
	return fmt.Sprintf("%s%s%s-%s-v%d-", buildContainerPrefix, ns, owner, name, version)
}

// dockerBuild is one build container's life.
type dockerBuild struct {
	d    *Docker
	job  Job
	spec *ufop.Spec
	base string
	tag  string
	log  io.Writer
	// name and id of the build container, once it may exist.
	name, id string
	// committing is set once the commit was asked for (tag may exist).
	committing bool
}

// detached is ctx without its cancellation, bounded by d: for calls whose
// effect must be known even when the build is cancelled (a container
// created or an image committed by the daemon after the client gave up
// would be left behind), and for the clean-up.
func detached(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}

// run creates the build container, copies the resource in, runs script
// with its output streamed to the log, and reports how it exited.
func (b *dockerBuild) run(ctx context.Context, script, resource string, labels map[string]string) error {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	b.name = fmt.Sprintf("%s%x", b.d.cfg.buildContainerName(b.job.Owner, b.job.Name, b.job.Version), rnd)
	cctx, cancel := detached(ctx, 2*time.Minute)
	created, err := b.d.c.ContainerCreate(cctx, &container.Config{
		Image:        b.base,
		User:         "0:0",
		Env:          buildEnv(b.spec),
		Entrypoint:   strslice.StrSlice{},
		Cmd:          strslice.StrSlice{"/bin/sh", "-c", script},
		AttachStdout: true,
		AttachStderr: true,
		Labels:       labels,
	}, nil, nil, nil, b.name)
	cancel()
	if err != nil {
		return errs.Failed(err, "cannot create the build container")
	}
	b.id = created.ID
	if err := ctx.Err(); err != nil {
		return err
	}

	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarDir(resource, strings.TrimPrefix(ResourceDir, "/"), pw)) }()
	err = b.d.c.CopyToContainer(ctx, b.id, "/", pr, container.CopyToContainerOptions{})
	pr.CloseWithError(errors.New("copy ended"))
	if err != nil {
		return errs.Failed(err, "cannot copy the tarball into the build container")
	}

	att, err := b.d.c.ContainerAttach(ctx, b.id, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return errs.Failed(err, "cannot attach to the build container")
	}
	defer att.Close()
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	waitc, waitErr := b.d.c.ContainerWait(wctx, b.id, container.WaitConditionNextExit)
	if err := b.d.c.ContainerStart(ctx, b.id, container.StartOptions{}); err != nil {
		if cerrdefs.IsInvalidArgument(err) {
			return errs.Wrap(400, err, "cannot start the build container on %s: %v", b.base, err)
		}
		return errs.Failed(err, "cannot start the build container")
	}
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(b.log, b.log, att.Reader)
		copied <- err
	}()
	select {
	case err := <-copied:
		if err != nil && ctx.Err() == nil {
			return errs.Failed(err, "reading the build output")
		}
	case <-ctx.Done():
		att.Close() // the hijacked connection does not follow ctx
		<-copied
		return ctx.Err()
	}
	var code int64
	select {
	case r := <-waitc:
		if r.Error != nil && r.Error.Message != "" {
			return errs.Failed(errors.New(r.Error.Message), "waiting for the build container")
		}
		code = r.StatusCode
	case err := <-waitErr:
		return ctxErr(ctx, errs.Failed(err, "waiting for the build container"))
	}
	if code == 0 {
		return nil
	}
	err = b.failure(ctx, int(code))
	fmt.Fprintf(b.log, "ERROR: %v\n", err)
	return err
}

// failure names what failed in a build container that exited with code:
// the step from statusFile.
func (b *dockerBuild) failure(ctx context.Context, code int) error {
	step := b.step(ctx)
	if n, err := strconv.Atoi(step); err == nil && n >= 1 && n <= len(b.spec.BuildScript) {
		return &BuildError{Line: n, Cmd: b.spec.BuildScript[n-1], ExitCode: code, Detail: fmt.Sprintf("exit code %d", code)}
	}
	switch step {
	case stepPrepare:
		return errs.New(400, "preparing the build container on %s failed: exit code %d (the base image needs /bin/sh, grep, mkdir and chmod)", b.base, code)
	case stepCleanUp:
		return errs.New(400, "cleaning up the build container failed: exit code %d", code)
	}
	return errs.New(400, "the build container exited with code %d", code)
}

// step reads statusFile from the stopped build container ("" when it
// cannot).
func (b *dockerBuild) step(ctx context.Context) string {
	rc, _, err := b.d.c.CopyFromContainer(ctx, b.id, statusFile)
	if err != nil {
		return ""
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		return ""
	}
	data, _ := io.ReadAll(io.LimitReader(tr, 64))
	return strings.TrimSpace(string(data))
}

// commit makes the image from the stopped build container and tags it.
func (b *dockerBuild) commit(ctx context.Context, conf *container.Config) error {
	b.committing = true
	cctx, cancel := detached(ctx, 10*time.Minute)
	defer cancel()
	_, err := b.d.c.ContainerCommit(cctx, b.id, container.CommitOptions{
		Reference: b.tag,
		Comment:   fmt.Sprintf("qufop build of %s/%s v%d on %s", b.job.Owner, b.job.Name, b.job.Version, b.base),
		Config:    conf,
		Pause:     false,
	})
	if err != nil {
		return errs.Failed(err, "docker commit of %s failed", b.tag)
	}
	return nil
}

// untag removes the tag of a build that failed after its commit was asked
// for, and the image if nothing else holds it (no parents are pruned: they
// are bases other builds use).
func (b *dockerBuild) untag(ctx context.Context) {
	if !b.committing {
		return
	}
	rctx, cancel := detached(ctx, time.Minute)
	defer cancel()
	if _, err := b.d.c.ImageRemove(rctx, b.tag, image.RemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		fmt.Fprintf(b.log, "qufop: WARNING: cannot remove %s of the failed build: %v\n", b.tag, err)
	}
}

// removeContainer removes the build container, if it may exist: by id,
// or by name when its creation failed (the daemon may have made it
// anyway).
func (b *dockerBuild) removeContainer(ctx context.Context) {
	ref := b.id
	if ref == "" {
		ref = b.name
	}
	if ref == "" {
		return
	}
	rctx, cancel := detached(ctx, 2*time.Minute)
	defer cancel()
	for try := 1; ; try++ {
		err := b.d.c.ContainerRemove(rctx, ref, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err == nil || cerrdefs.IsNotFound(err) {
			return
		}
		// "removal already in progress" and the like pass.
		if try == 20 || sleep(rctx, 250*time.Millisecond) != nil {
			fmt.Fprintf(b.log, "qufop: WARNING: cannot remove the build container %s: %v\n", b.name, err)
			return
		}
	}
}

// ctxErr prefers the context's error (a timeout) when ctx is done.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// ensureBase checks that the daemon holds ref, pulling it from the
// configured registry (never from a public one) when ref names it, and
// returns its inspection.
func (d *Docker) ensureBase(ctx context.Context, ref string, log io.Writer) (*image.InspectResponse, error) {
	ins, err := d.c.ImageInspect(ctx, ref)
	if err == nil {
		return &ins, nil
	}
	if !client.IsErrNotFound(err) {
		return nil, errs.Failed(err, "cannot inspect base image %s", ref)
	}
	if d.cfg.Registry != "" && strings.HasPrefix(ref, d.cfg.Registry+"/") {
		fmt.Fprintf(log, "qufop: pulling base image %s\n", ref)
		rc, perr := d.c.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: emptyAuth})
		if perr == nil {
			perr = decodeStatus(rc, io.Discard)
			rc.Close()
		}
		if perr == nil {
			if ins, err := d.c.ImageInspect(ctx, ref); err == nil {
				return &ins, nil
			} else {
				perr = err
			}
		}
		err = perr
	}
	return nil, errs.Wrap(400, err, "base image %s not found: %v (no image can be pulled from public registries)", ref, err)
}

func (d *Docker) push(ctx context.Context, tag string, log io.Writer) error {
	fmt.Fprintf(log, "qufop: pushing %s\n", tag)
	rc, err := d.c.ImagePush(ctx, tag, image.PushOptions{RegistryAuth: emptyAuth})
	if err != nil {
		return errs.Failed(err, "push of %s failed", tag)
	}
	defer rc.Close()
	if err := decodeStatus(rc, log); err != nil {
		return errs.Failed(err, "push of %s failed", tag)
	}
	fmt.Fprintf(log, "qufop: pushed %s\n", tag)
	return nil
}

// jsonMessage is the part of Docker's jsonmessage.JSONMessage the builder
// reads (that package pulls in terminal libraries this module does not
// carry).
type jsonMessage struct {
	Stream string `json:"stream,omitempty"`
	Status string `json:"status,omitempty"`
	ID     string `json:"id,omitempty"`
	Error  *struct {
		Code    int    `json:"code,omitempty"`
		Message string `json:"message,omitempty"`
	} `json:"errorDetail,omitempty"`
	ErrorMessage string `json:"error,omitempty"`
}

func (m *jsonMessage) err() (string, int) {
	if m.Error != nil && m.Error.Message != "" {
		return m.Error.Message, m.Error.Code
	}
	return m.ErrorMessage, 0
}

// decodeStatus copies a pull or push message stream to log and fails on an
// error message.
func decodeStatus(r io.Reader, log io.Writer) error {
	dec := json.NewDecoder(bufio.NewReader(r))
	st := statusWriter{w: log}
	for {
		var m jsonMessage
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if msg, _ := m.err(); msg != "" {
			fmt.Fprintf(log, "ERROR: %s\n", msg)
			return errors.New(msg)
		}
		if m.Status != "" {
			st.write(&m)
		}
		if m.Stream != "" {
			io.WriteString(log, m.Stream)
		}
	}
}

// statusWriter writes status messages as lines, once per layer and status
// (progress updates repeat them).
type statusWriter struct {
	w    io.Writer
	last map[string]string
}

func (s *statusWriter) write(m *jsonMessage) {
	if m.ID == "" {
		fmt.Fprintln(s.w, m.Status)
		return
	}
	if s.last == nil {
		s.last = map[string]string{}
	}
	if s.last[m.ID] == m.Status {
		return
	}
	s.last[m.ID] = m.Status
	fmt.Fprintf(s.w, "%s: %s\n", m.ID, m.Status)
}

// tarDir writes the tree under dir as a tar stream whose names start with
// prefix/ (a relative path): files, folders and symlinks as they are, hard
// links as links (their bytes once), everything owned by root.
func tarDir(dir, prefix string, w io.Writer) error {
	tw := tar.NewWriter(w)
	type inode struct{ dev, ino uint64 }
	seen := map[inode]string{}
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = path.Join(prefix, filepath.ToSlash(rel))
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if st, ok := info.Sys().(*syscall.Stat_t); ok && info.Mode().IsRegular() && st.Nlink > 1 {
			key := inode{uint64(st.Dev), uint64(st.Ino)}
			if first, ok := seen[key]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
				return tw.WriteHeader(hdr)
			}
			seen[key] = hdr.Name
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
