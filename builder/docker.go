package builder

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
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
}

// NewDocker returns the Docker backend on client c (made with
// client.WithAPIVersionNegotiation()).
func NewDocker(cfg Config, c *client.Client) *Docker { return &Docker{cfg: cfg, c: c} }

// Mode is "docker".
func (d *Docker) Mode() string { return "docker" }

// emptyAuth is base64("{}"): the test registry needs no credentials.
var emptyAuth = base64.URLEncoding.EncodeToString([]byte("{}"))

// Build unpacks the tarball into a temporary context under cfg.Dir, renders
// the Dockerfile, builds and tags <registry>/<owner>/<name>:v<N>, and pushes
// it to the registry.
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
	spec, err := Unpack(ctx, tb, filepath.Join(work, "resource"), d.cfg.Limits())
	tb.Close()
	if err != nil {
		return Result{}, err
	}
	fmt.Fprintf(log, "qufop: tarball unpacked; image %s, %d build_script line(s)\n", spec.Image, len(spec.BuildScript))

	base, err := d.cfg.ResolveBase(spec.Image, job.Owner)
	if err != nil {
		return Result{}, err
	}
	if err := d.ensureBase(ctx, base, log); err != nil {
		return Result{}, err
	}
	df, err := RenderDockerfile(spec, RenderOptions{Base: base, User: d.cfg.User, Port: Port})
	if err != nil {
		return Result{}, err
	}
	if err := os.WriteFile(filepath.Join(work, "Dockerfile"), []byte(df), 0o644); err != nil {
		return Result{}, err
	}

	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarDir(work, pw)) }()
	defer pr.Close()
	labels := map[string]string{
		"qufop.ufop":    job.Name,
		"qufop.owner":   job.Owner,
		"qufop.version": strconv.Itoa(job.Version),
	}
	resp, err := d.c.ImageBuild(ctx, pr, build.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  "Dockerfile",
		Remove:      true,
		ForceRemove: true,
		PullParent:  false,
		Labels:      labels,
		Version:     build.BuilderV1,
	})
	if err != nil {
		return Result{}, ctxErr(ctx, errs.Failed(err, "docker build failed to start"))
	}
	out, err := decodeBuild(resp.Body, log, spec)
	resp.Body.Close()
	if err != nil {
		d.removeLeftovers(out)
		return Result{}, ctxErr(ctx, err)
	}
	if _, err := d.c.ImageInspect(ctx, tag); err != nil {
		return Result{}, ctxErr(ctx, errs.Failed(err, "docker build did not produce %s", tag))
	}
	fmt.Fprintf(log, "qufop: built %s\n", tag)

	if d.cfg.Registry == "" {
		fmt.Fprintf(log, "qufop: no registry configured; %s is not pushed\n", tag)
	} else if err := d.push(ctx, tag, log); err != nil {
		return Result{}, ctxErr(ctx, err)
	}
	return Result{Image: tag, Spec: spec}, nil
}

// ctxErr prefers the context's error (a timeout) when ctx is done.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// removeLeftovers deletes the intermediate images a failed build left
// (the last one and its untagged parents; the base and images other builds
// use stay).
func (d *Docker) removeLeftovers(out buildOutput) {
	if out.last == "" || out.last == out.base {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// After a cancelled build the daemon may still be removing the step's
	// container, which holds the image for a moment.
	for try := 0; try < 20; try++ {
		_, err := d.c.ImageRemove(ctx, out.last, image.RemoveOptions{PruneChildren: true})
		if err == nil || !cerrdefs.IsConflict(err) {
			return
		}
		if sleep(ctx, 500*time.Millisecond) != nil {
			return
		}
	}
}

// ensureBase checks that the daemon holds ref, pulling it from the
// configured registry (never from a public one) when ref names it.
func (d *Docker) ensureBase(ctx context.Context, ref string, log io.Writer) error {
	_, err := d.c.ImageInspect(ctx, ref)
	if err == nil {
		return nil
	}
	if !client.IsErrNotFound(err) {
		return errs.Failed(err, "cannot inspect base image %s", ref)
	}
	if d.cfg.Registry != "" && strings.HasPrefix(ref, d.cfg.Registry+"/") {
		fmt.Fprintf(log, "qufop: pulling base image %s\n", ref)
		rc, perr := d.c.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: emptyAuth})
		if perr == nil {
			perr = decodeStatus(rc, io.Discard)
			rc.Close()
		}
		if perr == nil {
			return nil
		}
		err = perr
	}
	return errs.Wrap(400, err, "base image %s not found: %v (no image can be pulled from public registries)", ref, err)
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

var (
	exitRe  = regexp.MustCompile(`returned a non-zero code: ([0-9]+)`)
	layerRe = regexp.MustCompile(`^ ---> ([0-9a-f]{12,64})$`)
)

// buildOutput is what decodeBuild saw: the image of the first step (the
// base) and of the last finished one.
type buildOutput struct{ base, last string }

// decodeBuild copies a build's message stream to log as plain lines and
// turns an error message into an error naming the failed build_script line.
func decodeBuild(r io.Reader, log io.Writer, spec *ufop.Spec) (out buildOutput, _ error) {
	dec := json.NewDecoder(bufio.NewReader(r))
	var partial, step string
	line := 0
	st := statusWriter{w: log}
	for {
		var m jsonMessage
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return out, errs.Failed(err, "reading the docker build output")
		}
		if m.Stream != "" {
			io.WriteString(log, m.Stream)
			partial += m.Stream
			for {
				l, rest, ok := strings.Cut(partial, "\n")
				if !ok {
					break
				}
				partial = rest
				if mm := layerRe.FindStringSubmatch(l); mm != nil {
					out.last = mm[1]
					if out.base == "" {
						out.base = mm[1]
					}
				}
				if strings.HasPrefix(l, "Step ") {
					step, line = l, 0
					if mm := markerRe.FindStringSubmatch(l); mm != nil {
						line, _ = strconv.Atoi(mm[1])
					}
				}
			}
		} else if m.Status != "" {
			st.write(&m)
		}
		msg, code := m.err()
		if msg == "" {
			continue
		}
		fmt.Fprintf(log, "ERROR: %s\n", msg)
		if line >= 1 && line <= len(spec.BuildScript) {
			exit := -1
			if mm := exitRe.FindStringSubmatch(msg); mm != nil {
				exit, _ = strconv.Atoi(mm[1])
			} else if code > 0 {
				exit = code
			}
			return out, &BuildError{Line: line, Cmd: spec.BuildScript[line-1], ExitCode: exit, Detail: msg}
		}
		if step != "" {
			return out, errs.New(400, "docker build failed at %q: %s", strings.TrimSpace(step), msg)
		}
		return out, errs.New(400, "docker build failed: %s", msg)
	}
	return out, nil
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

// tarDir writes dir as a tar stream (the build context): files, folders and
// symlinks as they are, owned by root.
func tarDir(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
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
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
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
