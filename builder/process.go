package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/qufop/qufop/errs"
)

// Process is the backend for hosts without a Docker daemon. It unpacks the
// tarball into cfg.Dir/<owner>/<name>/v<N>/resource, runs each build_script
// line with /bin/sh -c in the sibling app folder ($RESOURCE pointing at the
// unpacked tarball, a sudo that just runs its arguments on PATH), and then
// removes the resource folder. The platform later runs the spec's run
// command in the app folder with PORT_HTTP set.
//
// Process mode isolates nothing: build scripts and programs run as the
// platform's own user, see its whole file system and network, and are not
// limited in CPU or memory. Use it for development only.
type Process struct{ cfg Config }

// NewProcess returns the process backend.
func NewProcess(cfg Config) *Process { return &Process{cfg: cfg} }

// Mode is "process".
func (p *Process) Mode() string { return "process" }

// VersionDir is the folder of one version in process mode.
func (p *Process) VersionDir(owner, name string, version int) string {
	return filepath.Join(p.cfg.Dir, owner, name, "v"+strconv.Itoa(version))
}

// Build unpacks and runs the build script; Result.Dir is the app folder.
func (p *Process) Build(ctx context.Context, job Job, log io.Writer) (res Result, err error) {
	if err := job.check(); err != nil {
		return Result{}, err
	}
	if log == nil {
		log = io.Discard
	}
	vdir := p.VersionDir(job.Owner, job.Name, job.Version)
	fmt.Fprintf(log, "qufop: %s %s/%s v%d in %s (process mode: isolates nothing)\n", StateBuilding, job.Owner, job.Name, job.Version, vdir)
	if err := os.RemoveAll(vdir); err != nil {
		return Result{}, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(vdir)
		}
	}()
	appDir := filepath.Join(vdir, "app")
	resDir := filepath.Join(vdir, "resource")
	binDir := filepath.Join(vdir, ".bin")
	for _, d := range []string{appDir, binDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return Result{}, err
		}
	}
	tb, err := job.open()
	if err != nil {
		return Result{}, errs.Wrap(400, err, "cannot read the tarball")
	}
	spec, err := Unpack(ctx, tb, resDir, p.cfg.Limits())
	tb.Close()
	if err != nil {
		return Result{}, err
	}
	if err := os.WriteFile(filepath.Join(binDir, "sudo"), []byte("#!/bin/sh\nexec \"$@\"\n"), 0o755); err != nil {
		return Result{}, err
	}
	env := []string{
		"RESOURCE=" + resDir,
		"HOME=" + appDir,
		"PATH=" + binDir + string(os.PathListSeparator) + hostPath(),
		"PORT_HTTP=" + strconv.Itoa(Port),
	}
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	for i, line := range spec.BuildScript {
		n := i + 1
		fmt.Fprintf(log, "%s%d: %s\n", lineMarker, n, strings.ReplaceAll(strings.TrimSpace(line), "\n", `\n`))
		if err := runLine(ctx, appDir, env, line, log); err != nil {
			if ctx.Err() != nil {
				return Result{}, fmt.Errorf("build_script line %d (%q): %w", n, line, ctx.Err())
			}
			exit := -1
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				exit = ee.ExitCode()
			}
			be := &BuildError{Line: n, Cmd: line, ExitCode: exit, Detail: err.Error()}
			fmt.Fprintf(log, "ERROR: %v\n", be)
			return Result{}, be
		}
	}
	if err := os.RemoveAll(resDir); err != nil {
		return Result{}, err
	}
	if err := os.RemoveAll(binDir); err != nil {
		return Result{}, err
	}
	return Result{Spec: spec, Dir: appDir}, nil
}

// Remove deletes the version folder of artifact, a Result.Dir
// (cfg.Dir/<owner>/<name>/v<N>/app); any other path, in particular one
// outside cfg.Dir, is refused. A folder that is gone is no error.
func (p *Process) Remove(ctx context.Context, artifact string) error {
	root, err := filepath.Abs(p.cfg.Dir)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(artifact)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(root, dir)
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if err != nil || len(parts) != 4 || parts[3] != "app" || checkName("owner", parts[0]) != nil || checkName("ufop name", parts[1]) != nil || !versionDirRe.MatchString(parts[2]) {
		return errs.BadRequest("%q is not an app folder of this builder (want %s)", artifact, filepath.Join(p.cfg.Dir, "<owner>", "<name>", "v<N>", "app"))
	}
	vdir := filepath.Dir(dir)
	// The folders on the way must be real ones: a symlink would lead the
	// removal out of cfg.Dir.
	for d := vdir; d != root; d = filepath.Dir(d) {
		fi, err := os.Lstat(d)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return errs.BadRequest("%q is not an app folder of this builder: %s is not a folder", artifact, d)
		}
	}
	if err := os.RemoveAll(vdir); err != nil {
		return err
	}
	// The UFOP's and the owner's folders go when they are empty.
	_ = os.Remove(filepath.Dir(vdir))
	_ = os.Remove(filepath.Dir(filepath.Dir(vdir)))
	return nil
}

var versionDirRe = regexp.MustCompile(`^v[1-9][0-9]*$`)

func hostPath() string {
	if p := os.Getenv("PATH"); p != "" {
		return p
	}
	return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

// runLine runs one build_script line under set -e in its own process
// group, killed as a whole when ctx ends.
func runLine(ctx context.Context, dir string, env []string, line string, log io.Writer) error {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", "set -e; "+line)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdin = nil
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	return cmd.Run()
}
