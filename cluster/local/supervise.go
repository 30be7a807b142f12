package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/qufop/qufop/cluster"
)

// supervise runs the life of one instance until ctx ends: start it, notice
// when it exits (restart with back-off), probe its health (restart it when
// it stays unhealthy past the grace period).
//
// A starting instance is probed every StartupInterval instead of every
// HealthInterval, for at most StartupWindow: the scaler's new instances
// take requests as soon as they answer, not up to a HealthInterval later.
func (m *manager) supervise(ctx context.Context, in *instance) {
	m.tick(ctx, in)
	t := time.NewTimer(m.nextProbe(in))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.tick(ctx, in)
		t.Reset(m.nextProbe(in))
	}
}

// nextProbe is the time until the next tick of in.
func (m *manager) nextProbe(in *instance) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !in.everHealthy && (in.started.IsZero() || time.Since(in.started) < m.opts.StartupWindow) {
		return min(m.opts.StartupInterval, m.opts.HealthInterval)
	}
	return m.opts.HealthInterval
}

func (m *manager) tick(ctx context.Context, in *instance) {
	if ctx.Err() != nil {
		return
	}
	m.mu.Lock()
	needStart, due := in.needStart, !time.Now().Before(in.nextStart)
	m.mu.Unlock()
	if needStart {
		if due {
			m.startInstance(ctx, in)
		}
		return
	}

	exited, why, err := m.drv.status(ctx, in)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		m.mu.Lock()
		in.message = "status: " + err.Error()
		m.mu.Unlock()
		return
	}
	if exited {
		m.mu.Lock()
		in.crashes++
		d := m.opts.backoff(in.crashes)
		in.state = StateExited
		in.healthy = false
		in.needStart = true
		in.nextStart = time.Now().Add(d)
		in.why = why
		in.message = fmt.Sprintf("%s; restarting in %s", why, d)
		m.mu.Unlock()
		m.opts.Logger.Warn("instance exited", "ufop", in.w.Name, "version", in.w.Version, "index", in.index, "why", why, "restart_in", d)
		m.publish(in.w.Name)
		return
	}

	m.mu.Lock()
	addr := in.addr
	m.mu.Unlock()
	perr := m.check(ctx, addr, in.w)
	if ctx.Err() != nil {
		return
	}
	changed, restart := false, false
	now := time.Now()
	m.mu.Lock()
	if perr == nil {
		in.fails = 0
		in.crashes = 0
		if !in.healthy {
			in.healthy, in.everHealthy, changed = true, true, true
			in.state = StateRunning
			in.message = "healthy"
			if in.restarts > 0 && in.why != "" {
				in.message = "healthy; last restart: " + in.why
			}
		}
	} else {
		in.fails++
		if in.healthy && in.fails >= m.opts.UnhealthyAfter {
			in.healthy, changed = false, true
			in.unhealthySince = now
			in.message = "unhealthy: " + perr.Error()
		} else if !in.healthy && in.everHealthy && in.fails >= m.opts.UnhealthyAfter && now.Sub(in.unhealthySince) > m.opts.UnhealthyGrace {
			restart = true
			in.state = StateStarting
			in.message = fmt.Sprintf("unhealthy for more than %s (%v); restarting", m.opts.UnhealthyGrace, perr)
			in.why = in.message
		} else if !in.healthy && in.fails >= m.opts.UnhealthyAfter && !in.everHealthy {
			in.message = "not healthy yet: " + perr.Error()
		}
	}
	m.mu.Unlock()
	if changed {
		m.opts.Logger.Info("health", "ufop", in.w.Name, "version", in.w.Version, "index", in.index, "healthy", perr == nil, "err", perr)
		m.publish(in.w.Name)
	}
	if restart {
		m.opts.Logger.Warn("restarting unhealthy instance", "ufop", in.w.Name, "version", in.w.Version, "index", in.index)
		if err := m.drv.halt(ctx, in, in.w.KillTimeout); err != nil && ctx.Err() == nil {
			m.opts.Logger.Warn("halt", "ufop", in.w.Name, "index", in.index, "err", err)
		}
		m.mu.Lock()
		in.needStart = true
		in.nextStart = time.Now()
		m.mu.Unlock()
		m.startInstance(ctx, in)
	}
}

// startInstance starts (or restarts) in through the driver.
func (m *manager) startInstance(ctx context.Context, in *instance) {
	m.mu.Lock()
	restart := in.launched
	if restart {
		in.restarts++
	}
	why := in.why
	m.mu.Unlock()
	id, ep, err := m.drv.start(ctx, in)
	m.mu.Lock()
	if id != "" {
		in.id = id
	}
	if ctx.Err() != nil {
		m.mu.Unlock()
		return
	}
	if err != nil {
		in.crashes++
		d := m.opts.backoff(in.crashes)
		in.state = StateFailed
		in.healthy = false
		in.nextStart = time.Now().Add(d)
		in.message = fmt.Sprintf("start: %v; retrying in %s", err, d)
		in.why = "start failed: " + err.Error()
		m.mu.Unlock()
		m.opts.Logger.Warn("instance start failed", "ufop", in.w.Name, "version", in.w.Version, "index", in.index, "err", err)
		m.publish(in.w.Name)
		return
	}
	in.addr, in.published = ep.addr, ep.published
	in.state = StateStarting
	in.healthy = false
	in.fails = 0
	in.everHealthy = false
	in.started = time.Now()
	in.launched = true
	in.needStart = false
	if restart {
		in.message = "restarted: " + why
	} else {
		in.message = "started"
	}
	m.mu.Unlock()
	m.opts.Logger.Info("instance started", "ufop", in.w.Name, "version", in.w.Version, "index", in.index, "addr", ep.addr, "restart", restart)
	m.publish(in.w.Name)
}

// protocolUOP is the Workload.Protocol of Qiniu's first-generation
// programs (POST /uop).
const protocolUOP = "uop"

// check tells whether the instance at addr is ready (nil) or why not:
//   - with a HealthPath, GET HealthPath must answer 2xx;
//   - without one, the port must accept a TCP connection, and for a "uop"
//     program (Qiniu v1: no health endpoint, only POST /uop) it must also
//     give an HTTP answer, of any status, to a small request within
//     HealthTimeout: a connection that is closed, or answered with
//     something that is not HTTP, or not answered, does not count.
func (m *manager) check(ctx context.Context, addr string, w cluster.Workload) error {
	if addr == "" {
		return errors.New("no address")
	}
	switch {
	case w.HealthPath != "":
		return m.probeHTTP(ctx, addr, w.HealthPath)
	case w.Protocol == protocolUOP:
		return m.probeAlive(ctx, addr)
	default:
		return m.probeTCP(ctx, addr)
	}
}

// probeHTTP sends GET http://addr+path; nil means a 2xx answer.
func (m *manager) probeHTTP(ctx context.Context, addr, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := m.hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return nil
}

func (m *manager) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// probeTCP connects to addr and closes the connection at once.
func (m *manager) probeTCP(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, m.opts.HealthTimeout)
	defer cancel()
	c, err := m.dial(ctx, addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// aliveRequest is the probe of a program without a health endpoint: any
// HTTP server answers it, with whatever status (404, 405, ...).
const aliveRequest = "GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: qufop-probe\r\nConnection: close\r\n\r\n"

// probeAlive sends aliveRequest to addr; nil means an HTTP answer of any
// status within HealthTimeout. Only the status line and header are read.
func (m *manager) probeAlive(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, m.opts.HealthTimeout)
	defer cancel()
	c, err := m.dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := fmt.Fprintf(c, aliveRequest, addr); err != nil {
		return aliveError(ctx, err, m.opts.HealthTimeout)
	}
	if _, err := http.ReadResponse(bufio.NewReaderSize(c, 4<<10), nil); err != nil {
		return aliveError(ctx, err, m.opts.HealthTimeout)
	}
	return nil // any status counts; the body is not read
}

func aliveError(ctx context.Context, err error, timeout time.Duration) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("probe GET /: no HTTP answer within %s", timeout)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return errors.New("probe GET /: connection closed without an HTTP answer")
	default:
		return fmt.Errorf("probe GET /: not an HTTP answer: %v", err)
	}
}
