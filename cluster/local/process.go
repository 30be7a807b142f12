package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/qufop/qufop/cluster"
)

// ProcessWarning is what the process runtime says about itself.
const ProcessWarning = "qufop local orchestrator: no Docker daemon, running UFOPs as plain processes. " +
	"This mode isolates nothing: no CPU or memory limits, the same user and file system as the platform, " +
	"the same network. Use it only for UFOPs you trust, on a development machine."

// ProcessConfig configures the process runtime.
type ProcessConfig struct {
	Options
	// LogDir holds one log file per instance (stdout and stderr). Default:
	// a "qufop-process-logs" directory under os.TempDir().
	LogDir string
}

// Process runs UFOP instances as plain processes, for machines without a
// Docker daemon. It implements cluster.Orchestrator and cluster.Catalog.
//
// Process mode isolates nothing: an instance runs `/bin/sh -c <Run>` in the
// workload's Dir as the platform's own user, with no CPU or memory limits,
// on the host's network (it listens on the loopback port given in
// PORT_HTTP) and with access to everything the platform can reach. Only the
// environment is trimmed (PATH, HOME, TMPDIR, LANG, plus Workload.Env).
// Each instance has its own process group; a graceful stop sends SIGTERM to
// the group, then SIGKILL after the workload's KillTimeout.
type Process struct {
	*manager
	logDir string
}

var (
	_ cluster.Orchestrator = (*Process)(nil)
	_ cluster.Catalog      = (*Process)(nil)
)

// NewProcess returns a process runtime.
func NewProcess(cfg ProcessConfig) *Process {
	dir := cfg.LogDir
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "qufop-process-logs")
	}
	p := &Process{logDir: dir}
	p.manager = newManager(cfg.Options, &procDriver{logDir: dir})
	p.opts.Logger.Warn(ProcessWarning)
	return p
}

// Warning says plainly that process mode isolates nothing.
func (p *Process) Warning() string { return ProcessWarning }

// HostIP is the address instances reach the platform at: 127.0.0.1.
func (p *Process) HostIP() string { return "127.0.0.1" }

// Mode returns "process".
func (p *Process) Mode() string { return "process" }

// Close waits for the instances on their way out (a scale-in) to be gone,
// then stops the supervision and the processes themselves (gracefully):
// unlike containers, processes cannot be adopted by a later run.
func (p *Process) Close() error {
	p.close()
	ctx := context.Background()
	for _, in := range p.allInstances() {
		_ = p.drv.halt(ctx, in, in.w.KillTimeout)
	}
	return nil
}

// procDriver starts instances as process groups.
type procDriver struct {
	logDir string
}

type proc struct {
	cmd   *exec.Cmd
	pgid  int
	done  chan struct{}
	state *os.ProcessState
	err   error
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]`)

func (d *procDriver) logPath(in *instance) string {
	return filepath.Join(d.logDir, fmt.Sprintf("%s-v%d-%d.log", unsafeName.ReplaceAllString(in.w.Name, "_"), in.w.Version, in.index))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (d *procDriver) addrKind() string { return "host" }

func (d *procDriver) start(ctx context.Context, in *instance) (string, endpoint, error) {
	w := in.w
	if w.Run == "" {
		return "", endpoint{}, errors.New("process workload has no run command")
	}
	if w.Dir == "" {
		return "", endpoint{}, errors.New("process workload has no directory")
	}
	if err := os.MkdirAll(d.logDir, 0o755); err != nil {
		return "", endpoint{}, err
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if !in.launched {
		flags |= os.O_TRUNC
	}
	logf, err := os.OpenFile(d.logPath(in), flags, 0o644)
	if err != nil {
		return "", endpoint{}, err
	}
	defer logf.Close() // the child has its own descriptor
	port, err := freePort()
	if err != nil {
		return "", endpoint{}, err
	}
	cmd := exec.Command("/bin/sh", "-c", w.Run)
	cmd.Dir = w.Dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "LANG"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	for k, v := range w.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "PORT_HTTP="+strconv.Itoa(port))
	if err := cmd.Start(); err != nil {
		return "", endpoint{}, err
	}
	p := &proc{cmd: cmd, pgid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	in.priv = p
	return strconv.Itoa(p.pgid), endpoint{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}, nil
}

func (d *procDriver) status(ctx context.Context, in *instance) (bool, string, error) {
	p, _ := in.priv.(*proc)
	if p == nil {
		return true, "not started", nil
	}
	select {
	case <-p.done:
	default:
		return false, "", nil
	}
	return true, exitReason(p.state, p.err), nil
}

func exitReason(st *os.ProcessState, err error) string {
	if st == nil {
		return fmt.Sprintf("exited: %v", err)
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("killed by signal %s", ws.Signal())
	}
	return fmt.Sprintf("exited with code %d", st.ExitCode())
}

// halt sends SIGTERM to the process group, waits for the whole group to be
// gone, and sends SIGKILL after timeout.
func (d *procDriver) halt(ctx context.Context, in *instance, timeout time.Duration) error {
	p, _ := in.priv.(*proc)
	if p == nil {
		return nil
	}
	groupAlive := func() bool {
		return syscall.Kill(-p.pgid, 0) == nil
	}
	select {
	case <-p.done:
		if !groupAlive() {
			return nil
		}
	default:
	}
	_ = syscall.Kill(-p.pgid, syscall.SIGTERM)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-deadline.C:
			_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				return fmt.Errorf("process group %d did not exit after SIGKILL", p.pgid)
			}
			return nil
		case <-ctx.Done():
			_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
			return ctx.Err()
		case <-tick.C:
			select {
			case <-p.done:
				if !groupAlive() {
					return nil
				}
			default:
			}
		}
	}
}

func (d *procDriver) remove(ctx context.Context, in *instance) error { return nil }

// logs copies the instance's log file; with follow it keeps reading what
// is appended until ctx ends.
func (d *procDriver) logs(ctx context.Context, in *instance, follow bool, w io.Writer) error {
	f, err := os.Open(d.logPath(in))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	defer f.Close()
	for {
		if _, err := io.Copy(w, f); err != nil {
			return err
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}
