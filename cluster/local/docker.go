package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/qufop/qufop/cluster"
)

// Container labels. LabelPlatform is on the platform's network too.
const (
	LabelPlatform = "qufop.platform" // the PlatformID
	LabelUFOP     = "qufop.ufop"
	LabelVersion  = "qufop.version"
	LabelIndex    = "qufop.index"
	LabelOwner    = "qufop.owner"
	LabelWorkload = "qufop.workload" // the Workload as JSON, for adoption
	LabelNetwork  = "qufop.network"  // "1" on networks the runtime made
)

// MaxPlatformIDLen is the longest PlatformID.
const MaxPlatformIDLen = 24

// CheckPlatformID says what is wrong with a platform id, if anything: it
// must be 1 to MaxPlatformIDLen lower-case letters, digits and '-'.
func CheckPlatformID(id string) error {
	if id == "" {
		return errors.New("empty platform id")
	}
	if len(id) > MaxPlatformIDLen {
		return fmt.Errorf("platform id %q is longer than %d characters", id, MaxPlatformIDLen)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("platform id %q: only lower-case letters, digits and '-' are allowed", id)
		}
	}
	return nil
}

// NetworkName is the bridge network of a platform: "qufop-<id>".
func NetworkName(platformID string) string { return "qufop-" + platformID }

// DockerConfig configures the Docker runtime.
type DockerConfig struct {
	Options
	// PlatformID names this platform on the Docker daemon, which other
	// platforms (another `qufop dev`, tests) may share: it is in the names
	// of the containers (ContainerName) and of the network (NetworkName),
	// and in the LabelPlatform label of both. Only containers with the own
	// id are adopted. Required; see CheckPlatformID. Keep it across
	// restarts to keep the instances.
	PlatformID string
	// Network is the user-defined bridge the containers run on, created
	// (with the platform's labels) if missing. Default
	// NetworkName(PlatformID).
	Network string
	// PidsLimit caps the processes of one container. Default 256.
	PidsLimit int64
	// NoFirewall leaves the host's iptables alone: instances can then
	// reach every port of this machine and every address it routes to
	// (Warning says so). For daemons this process cannot firewall (not
	// root, no iptables); NewDocker falls back to it by itself when
	// iptables fails.
	NoFirewall bool
}

// Docker runs UFOP instances as Docker containers: CPU, memory and pids
// limits, all capabilities dropped, no-new-privileges, a read-only root
// file system but for the image's working directory (a volume of the
// container's own) and /tmp (a tmpfs), on the platform's own bridge
// network, the workload port published on 127.0.0.1 only. The bridge is
// firewalled (see firewall.go): an instance reaches no other instance, no
// address beyond this machine and, on this machine, only the ports the
// platform opens to it (AllowHostPort). It
// implements cluster.Orchestrator and cluster.Catalog. On start it adopts
// the containers a previous run of the same platform (PlatformID) left,
// so a restart of the platform keeps the instances; other platforms'
// containers are left alone.
type Docker struct {
	*manager
	cli        *client.Client
	platformID string
	hostIP     string
	network    string
	ownCli     bool // close cli on Close (New made it)
	// fw is the bridge's firewall; nil when there is none (warning says
	// why). allowed are the host ports opened to the instances.
	fw      *firewall
	warning string
	allowed []int
}

var (
	_ cluster.Orchestrator = (*Docker)(nil)
	_ cluster.Catalog      = (*Docker)(nil)
)

// NewDocker makes sure the platform's network exists, adopts the
// platform's existing containers and starts supervising them.
func NewDocker(cli *client.Client, cfg DockerConfig) (*Docker, error) {
	if cfg.PlatformID == "" {
		return nil, errors.New("docker runtime: no platform id (DockerConfig.PlatformID, local.Config.PlatformID): " +
			"it keeps this platform's containers and network apart from other platforms' on the daemon")
	}
	if err := CheckPlatformID(cfg.PlatformID); err != nil {
		return nil, fmt.Errorf("docker runtime: %w", err)
	}
	if cfg.Network == "" {
		cfg.Network = NetworkName(cfg.PlatformID)
	}
	if cfg.PidsLimit <= 0 {
		cfg.PidsLimit = 256
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gw, bridge, err := ensureNetwork(ctx, cli, cfg.Network, cfg.PlatformID)
	if err != nil {
		return nil, err
	}
	drv := &dockerDriver{cli: cli, platformID: cfg.PlatformID, network: cfg.Network, pidsLimit: cfg.PidsLimit}
	d := &Docker{cli: cli, platformID: cfg.PlatformID, hostIP: gw, network: cfg.Network}
	d.manager = newManager(cfg.Options, drv)
	// Before adopting: an adopted container is firewalled before it is
	// served again.
	if cfg.NoFirewall {
		d.warning = noFirewallWarning("DockerConfig.NoFirewall is set")
	} else if err := d.firewall(bridge); err != nil {
		d.warning = noFirewallWarning(err.Error())
		d.opts.Logger.Warn(d.warning)
	}
	if err := d.adopt(ctx); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

// HostIP is the gateway address of the platform's bridge: where
// containers reach the platform (the gateway serves input blobs there).
func (d *Docker) HostIP() string { return d.hostIP }

// PlatformID is the id of the platform whose containers this runtime runs.
func (d *Docker) PlatformID() string { return d.platformID }

// Network is the bridge network the containers run on.
func (d *Docker) Network() string { return d.network }

// Mode returns "docker".
func (d *Docker) Mode() string { return "docker" }

// Warning is empty when the containers are isolated, else it says what
// is missing (the bridge is not firewalled).
func (d *Docker) Warning() string { return d.warning }

func noFirewallWarning(why string) string {
	return "UFOP instances are not firewalled (" + why + "): they can reach one another, " +
		"every port of this machine and every address it routes to"
}

// firewall sets up the rules of bridge, and removes those of bridges gone.
func (d *Docker) firewall(bridge string) error {
	ipt, err := newIPTables()
	if err != nil {
		return fmt.Errorf("iptables: %w", err)
	}
	unlock := lockNetworks()
	defer unlock()
	removeStaleFirewalls(ipt)
	fw := &firewall{ipt: ipt, bridge: bridge}
	if err := fw.ensure(nil); err != nil {
		return err
	}
	d.fw = fw
	return nil
}

// AllowHostPort lets the instances reach port (TCP) on this machine's
// addresses: the platform's blob listener on HostIP. Every other port of
// the machine stays closed to them. Ports opened by an earlier run of the
// platform are closed again by NewDocker. Without a firewall (Warning)
// every port is reachable anyway, and this does nothing.
func (d *Docker) AllowHostPort(port int) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("docker runtime: host port %d out of range", port)
	}
	d.mu.Lock()
	fw := d.fw
	if !slices.Contains(d.allowed, port) {
		d.allowed = append(d.allowed, port)
	}
	ports := slices.Clone(d.allowed)
	d.mu.Unlock()
	if fw == nil {
		return nil
	}
	unlock := lockNetworks()
	defer unlock()
	return fw.ensure(ports)
}

// Close waits for the containers on their way out (a scale-in: drained,
// stopped, removed) to be gone, then stops the supervision; the other
// containers keep running and are adopted by the next NewDocker. A
// platform that has no container left gives its network back: Docker's
// address pools hold about 30 bridges, and a platform made for an hour (a
// tutorial, a test) must not keep one.
func (d *Docker) Close() error {
	d.close()
	d.releaseNetwork()
	if d.ownCli {
		return d.cli.Close()
	}
	return nil
}

// releaseNetwork removes the platform's network if no container of the
// platform is left; it comes back at the next NewDocker.
func (d *Docker) releaseNetwork() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	unlock := lockNetworks()
	defer unlock()
	list, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelPlatform+"="+d.platformID))})
	if err != nil || len(list) > 0 {
		return
	}
	if err := d.cli.NetworkRemove(ctx, d.network); err != nil && !cerrdefs.IsNotFound(err) {
		d.opts.Logger.Info("docker: network kept", "network", d.network, "err", err)
		return
	}
	if d.fw != nil {
		if err := d.fw.remove(); err != nil {
			d.opts.Logger.Warn("docker: firewall of the network left", "network", d.network, "err", err)
		}
	}
}

// lockNetworks serialises creating and removing networks on this machine
// (see ensureNetwork); it returns the unlock.
func lockNetworks() func() {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "qufop-network.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return func() {}
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX) != nil {
		f.Close()
		return func() {}
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
}

// ensureNetwork creates the bridge (labelled as the platform's) if missing
// and returns its gateway and its interface.
func ensureNetwork(ctx context.Context, cli *client.Client, name, platformID string) (gw, bridge string, err error) {
	// Docker before API 1.44 happily creates two networks of one name when
	// two processes ask at once (two runs of one platform, or parallel test
	// packages), and then refuses to inspect either by name: serialise on
	// this machine. One lock for every name: creating is quick, and
	// platforms come and go (tests), their lock files would stay.
	unlock := lockNetworks()
	defer unlock()
	nw, err := cli.NetworkInspect(ctx, name, network.InspectOptions{})
	if cerrdefs.IsNotFound(err) {
		_, cerr := cli.NetworkCreate(ctx, name, network.CreateOptions{
			Driver: "bridge",
			Labels: map[string]string{LabelNetwork: "1", LabelPlatform: platformID},
			// Containers of one platform are strangers to each other
			// (the firewall drops that traffic too: this also holds
			// where the firewall cannot be set up).
			Options: map[string]string{"com.docker.network.bridge.enable_icc": "false"},
		})
		if cerr != nil && !cerrdefs.IsConflict(cerr) {
			return "", "", fmt.Errorf("docker network %s: %w", name, cerr)
		}
		nw, err = cli.NetworkInspect(ctx, name, network.InspectOptions{})
	}
	if err != nil {
		return "", "", fmt.Errorf("docker network %s: %w", name, err)
	}
	bridge = bridgeName(nw.ID, nw.Options)
	for _, c := range nw.IPAM.Config {
		if ip := net.ParseIP(c.Gateway); ip != nil && ip.To4() != nil {
			return c.Gateway, bridge, nil
		}
	}
	for _, c := range nw.IPAM.Config { // no gateway recorded: the first address of the subnet
		if p, err := netip.ParsePrefix(c.Subnet); err == nil && p.Addr().Is4() {
			return p.Masked().Addr().Next().String(), bridge, nil
		}
	}
	return "", "", fmt.Errorf("docker network %s has no IPv4 gateway", name)
}

// adopt takes over the containers earlier runs of this platform left. The
// daemon lists only those labelled with the platform's id: other
// platforms' containers, and unlabelled ones, are not even seen.
func (d *Docker) adopt(ctx context.Context) error {
	list, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelUFOP),
		filters.Arg("label", LabelPlatform+"="+d.platformID),
	)})
	if err != nil {
		return fmt.Errorf("docker: list containers: %w", err)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Created < list[j].Created })
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range list {
		if c.Labels[LabelPlatform] != d.platformID {
			continue
		}
		var w cluster.Workload
		if err := json.Unmarshal([]byte(c.Labels[LabelWorkload]), &w); err != nil || w.Name == "" || w.Name != c.Labels[LabelUFOP] {
			d.opts.Logger.Warn("docker: not adopting container without a valid workload label", "id", c.ID)
			continue
		}
		index, err := strconv.Atoi(c.Labels[LabelIndex])
		if err != nil {
			continue
		}
		wl := d.workloadLocked(w.Name, true)
		in := &instance{w: w, index: index, id: shortID(c.ID), serving: true, launched: true, state: StateStarting, message: "adopted"}
		info, err := d.cli.ContainerInspect(ctx, c.ID)
		if err != nil {
			continue
		}
		if info.State != nil && info.State.Running {
			in.addr = bridgeAddr(info, d.network, w.Port)
			in.published = hostAddr(info, w.Port)
			if t, err := time.Parse(time.RFC3339Nano, info.State.StartedAt); err == nil {
				in.started = t
			}
			if in.addr == "" { // start (a no-op on a running container) says why
				in.needStart = true
				in.nextStart = time.Now()
			}
		} else {
			in.needStart = true
			in.nextStart = time.Now()
			in.state = StateExited
			in.message = "adopted stopped container"
		}
		wl.insts = append(wl.insts, in)
		if wl.cur == nil || wl.cur.Version < w.Version {
			cw := w
			wl.cur = &cw
		}
		d.opts.Logger.Info("adopted", "ufop", w.Name, "version", w.Version, "index", index, "id", in.id)
	}
	for _, wl := range d.wls {
		n := 0
		for _, in := range wl.insts {
			if in.w.Version == wl.cur.Version {
				n++
			}
		}
		wl.cur.Count = n
		for _, in := range wl.insts {
			d.superviseLocked(in)
		}
	}
	return nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// ContainerName is the name of instance index of version of ufop on
// platform platformID: "qufop-<platform>-<ufop>-v<version>-<index>".
func ContainerName(platformID, ufop string, version, index int) string {
	return fmt.Sprintf("qufop-%s-%s-v%d-%d", platformID, unsafeName.ReplaceAllString(ufop, "_"), version, index)
}

// RemovePlatform removes from the daemon everything the platform
// platformID made there: its containers (running ones too, forcefully,
// with their anonymous volumes), its networks, and the images labelled as
// its own (LabelPlatform, as the builder labels them). Close the
// platform's runtimes first: a running one restarts the containers it
// misses. Things already gone are not an error; everything is attempted
// and the failures are returned together.
func RemovePlatform(ctx context.Context, cli *client.Client, platformID string) error {
	if err := CheckPlatformID(platformID); err != nil {
		return fmt.Errorf("remove platform: %w", err)
	}
	own := filters.NewArgs(filters.Arg("label", LabelPlatform+"="+platformID))
	var errs []error
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: own})
	if err != nil {
		errs = append(errs, fmt.Errorf("remove platform %s: list containers: %w", platformID, err))
	}
	for _, c := range list {
		if err := removeContainer(ctx, cli, c.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove platform %s: container %s: %w", platformID, strings.Join(c.Names, ","), err))
		}
	}
	nws, err := cli.NetworkList(ctx, network.ListOptions{Filters: own})
	if err != nil {
		errs = append(errs, fmt.Errorf("remove platform %s: list networks: %w", platformID, err))
	}
	for _, n := range nws {
		if err := cli.NetworkRemove(ctx, n.ID); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove platform %s: network %s: %w", platformID, n.Name, err))
			continue
		}
		if ipt, err := newIPTables(); err == nil {
			// Under the lock: another runtime may be removing stale chains.
			unlock := lockNetworks()
			err := (&firewall{ipt: ipt, bridge: bridgeName(n.ID, n.Options)}).remove()
			unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("remove platform %s: firewall of network %s: %w", platformID, n.Name, err))
			}
		}
	}
	imgs, err := cli.ImageList(ctx, image.ListOptions{Filters: own})
	if err != nil {
		errs = append(errs, fmt.Errorf("remove platform %s: list images: %w", platformID, err))
	}
	// An image that others are built on cannot go before them, even by
	// force (and Created, in seconds, does not order them): rounds until
	// no more go.
	for len(imgs) > 0 {
		var left []image.Summary
		var conflicts []error
		for _, img := range imgs {
			_, err := cli.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true})
			switch {
			case err == nil || cerrdefs.IsNotFound(err):
			case cerrdefs.IsConflict(err):
				left = append(left, img)
				conflicts = append(conflicts, fmt.Errorf("remove platform %s: image %s: %w", platformID, shortID(strings.TrimPrefix(img.ID, "sha256:")), err))
			default:
				errs = append(errs, fmt.Errorf("remove platform %s: image %s: %w", platformID, shortID(strings.TrimPrefix(img.ID, "sha256:")), err))
			}
		}
		if len(left) == len(imgs) {
			errs = append(errs, conflicts...)
			break
		}
		imgs = left
	}
	return errors.Join(errs...)
}

func hostAddr(info container.InspectResponse, port int) string {
	if info.NetworkSettings == nil {
		return ""
	}
	for _, b := range info.NetworkSettings.Ports[nat.Port(fmt.Sprintf("%d/tcp", port))] {
		if b.HostPort != "" && (b.HostIP == "127.0.0.1" || b.HostIP == "") {
			return net.JoinHostPort("127.0.0.1", b.HostPort)
		}
	}
	return ""
}

// bridgeAddr is the container's address on network, with port.
func bridgeAddr(info container.InspectResponse, network string, port int) string {
	if info.NetworkSettings == nil {
		return ""
	}
	if ep := info.NetworkSettings.Networks[network]; ep != nil && ep.IPAddress != "" {
		return net.JoinHostPort(ep.IPAddress, fmt.Sprint(port))
	}
	return ""
}

// removeContainer removes container id forcefully; gone already is fine.
// When another client is removing it at the same time (the daemon answers
// conflict), it waits until the container is gone, for up to a minute, so
// that the network can go after it.
func removeContainer(ctx context.Context, cli *client.Client, id string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		err := cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err == nil || cerrdefs.IsNotFound(err) {
			return nil
		}
		if !cerrdefs.IsConflict(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dockerDriver runs instances as containers. It names containers by
// ContainerName, so a container is found even when its id is not known yet.
type dockerDriver struct {
	cli        *client.Client
	platformID string
	network    string
	pidsLimit  int64
}

func (d *dockerDriver) name(in *instance) string {
	return ContainerName(d.platformID, in.w.Name, in.w.Version, in.index)
}

// addrKind: the platform reaches a container on its bridge, not through
// the published 127.0.0.1 port, since loopback traffic to a published port
// goes through docker-proxy, a userland copy that costs as much CPU as the
// gateway itself, and that accepts every connection, so that a TCP check
// through it would pass with nothing listening. The published port stays
// for people (PublishedAddr).
func (d *dockerDriver) addrKind() string { return "bridge" }

// startTimeout bounds a start, which goes on when its context ends.
const startTimeout = time.Minute

func (d *dockerDriver) start(ctx context.Context, in *instance) (string, endpoint, error) {
	// A request the daemon has taken is carried out even when the client
	// hangs up: a create aborted by a stop would leave a container after
	// the stop removed the name. So a start runs to its end.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startTimeout)
	defer cancel()
	name := d.name(in)
	if in.launched {
		err := d.cli.ContainerStart(ctx, name, container.StartOptions{})
		if err == nil {
			return d.inspectAddr(ctx, in)
		}
		if !cerrdefs.IsNotFound(err) {
			return "", endpoint{}, err
		}
	}
	if err := d.create(ctx, in); err != nil {
		return "", endpoint{}, err
	}
	if err := d.cli.ContainerStart(ctx, name, container.StartOptions{}); err != nil {
		return "", endpoint{}, err
	}
	return d.inspectAddr(ctx, in)
}

func (d *dockerDriver) inspectAddr(ctx context.Context, in *instance) (string, endpoint, error) {
	info, err := d.cli.ContainerInspect(ctx, d.name(in))
	if err != nil {
		return "", endpoint{}, err
	}
	ep := endpoint{addr: bridgeAddr(info, d.network, in.w.Port), published: hostAddr(info, in.w.Port)}
	if ep.published == "" {
		return shortID(info.ID), endpoint{}, fmt.Errorf("port %d/tcp is not published", in.w.Port)
	}
	if ep.addr == "" {
		return shortID(info.ID), endpoint{}, fmt.Errorf("container has no address on network %s", d.network)
	}
	return shortID(info.ID), ep, nil
}

func (d *dockerDriver) create(ctx context.Context, in *instance) error {
	w := in.w
	if w.Image == "" {
		return errors.New("workload has no image")
	}
	img, err := d.cli.ImageInspect(ctx, w.Image)
	if err != nil {
		return fmt.Errorf("image %s: %w", w.Image, err)
	}
	var cmd []string
	if img.Config == nil || len(img.Config.Cmd) == 0 {
		if w.Run == "" {
			return fmt.Errorf("image %s has no CMD and the workload no run command", w.Image)
		}
		cmd = []string{"/bin/sh", "-c", w.Run}
	}
	spec, err := json.Marshal(w)
	if err != nil {
		return err
	}
	port := nat.Port(fmt.Sprintf("%d/tcp", w.Port))
	env := make([]string, 0, len(w.Env)+1)
	for k, v := range w.Env {
		if k != "PORT_HTTP" {
			env = append(env, k+"="+v)
		}
	}
	sort.Strings(env)
	env = append(env, "PORT_HTTP="+strconv.Itoa(w.Port))
	stopTimeout := int(math.Ceil(w.KillTimeout.Seconds()))
	cfg := &container.Config{
		Image:        w.Image,
		Cmd:          cmd,
		Env:          env,
		ExposedPorts: nat.PortSet{port: struct{}{}},
		StopSignal:   "SIGTERM",
		StopTimeout:  &stopTimeout,
		Labels: map[string]string{
			LabelPlatform: d.platformID,
			LabelUFOP:     w.Name,
			LabelVersion:  strconv.Itoa(w.Version),
			LabelIndex:    strconv.Itoa(in.index),
			LabelOwner:    w.Owner,
			LabelWorkload: string(spec),
		},
	}
	pids := d.pidsLimit
	mem := int64(w.MemoryMB) << 20
	host := &container.HostConfig{
		NetworkMode:  container.NetworkMode(d.network),
		PortBindings: nat.PortMap{port: {{HostIP: "127.0.0.1", HostPort: ""}}},
		CapDrop:      []string{"ALL"},
		SecurityOpt:  []string{"no-new-privileges"},
		// The program writes only to its working directory and /tmp: the
		// image stays as built, and nothing it leaves survives its
		// container but the working directory's volume, removed with it.
		// /tmp holds data, not programs (noexec, as Docker's default).
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/tmp": "rw,noexec,nosuid,nodev,mode=1777"},
		Mounts:         workDirMount(img.Config),
		Resources: container.Resources{
			NanoCPUs:   int64(w.CPUs) * 1e9,
			Memory:     mem,
			MemorySwap: mem,
			PidsLimit:  &pids,
		},
		LogConfig: container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "2"}},
	}
	if mem == 0 {
		host.MemorySwap = 0
	}
	_, err = d.cli.ContainerCreate(ctx, cfg, host, nil, nil, d.name(in))
	if cerrdefs.IsConflict(err) { // a leftover of this platform (the name says so): replace it
		_ = d.cli.ContainerRemove(ctx, d.name(in), container.RemoveOptions{Force: true, RemoveVolumes: true})
		_, err = d.cli.ContainerCreate(ctx, cfg, host, nil, nil, d.name(in))
	}
	return err
}

// workDirMount is a volume of the container's own on the image's working
// directory, so that the program can write there on a read-only root: an
// anonymous volume is filled with the image's files on first use (the
// program's own, for images the builder made), lives as long as the
// container (a restart keeps it) and goes with it (RemoveVolumes). An
// image without a working directory (or "/") gets none: /tmp only.
func workDirMount(cfg *dockerspec.DockerOCIImageConfig) []mount.Mount {
	if cfg == nil {
		return nil
	}
	wd := path.Clean(cfg.WorkingDir)
	if cfg.WorkingDir == "" || wd == "/" || wd == "/tmp" || !path.IsAbs(wd) {
		return nil
	}
	return []mount.Mount{{Type: mount.TypeVolume, Target: wd}}
}

// OOMMessage is how an instance that the kernel killed for exceeding its
// memory limit is reported (its state's message, the 599 of a step it was
// running).
func OOMMessage(limitMB int) string {
	if limitMB <= 0 {
		return "killed: out of memory"
	}
	return fmt.Sprintf("killed: out of memory (limit %d MiB)", limitMB)
}

func (d *dockerDriver) status(ctx context.Context, in *instance) (bool, string, error) {
	info, err := d.cli.ContainerInspect(ctx, d.name(in))
	if cerrdefs.IsNotFound(err) {
		return true, "container disappeared", nil
	}
	if err != nil {
		return false, "", err
	}
	st := info.State
	if st == nil || st.Running || st.Restarting {
		return false, "", nil
	}
	var why []string
	if st.OOMKilled {
		why = append(why, OOMMessage(in.w.MemoryMB))
	}
	why = append(why, fmt.Sprintf("exited with code %d", st.ExitCode))
	if st.Error != "" {
		why = append(why, st.Error)
	}
	return true, strings.Join(why, ", "), nil
}

func (d *dockerDriver) halt(ctx context.Context, in *instance, timeout time.Duration) error {
	secs := int(math.Ceil(timeout.Seconds()))
	err := d.cli.ContainerStop(ctx, d.name(in), container.StopOptions{Signal: "SIGTERM", Timeout: &secs})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	return err
}

func (d *dockerDriver) remove(ctx context.Context, in *instance) error {
	err := d.cli.ContainerRemove(ctx, d.name(in), container.RemoveOptions{Force: true, RemoveVolumes: true})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	return err
}

func (d *dockerDriver) logs(ctx context.Context, in *instance, follow bool, w io.Writer) error {
	rc, err := d.cli.ContainerLogs(ctx, d.name(in), container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: follow})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("container %s: %w", d.name(in), cluster.ErrNotFound)
		}
		return err
	}
	defer rc.Close()
	_, err = stdcopy.StdCopy(w, w, rc)
	if follow && ctx.Err() != nil {
		return nil
	}
	return err
}
