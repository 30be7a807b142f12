package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// The agents of TestTerraformClusterConfigBoots: three server machines and
// a client machine, each on an address of its own on loopback, on ports
// other than the defaults (so that they meet no dev agent of another test).
var (
	tfServers = []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}
	tfClient  = "127.0.0.14"
)

const (
	tfNomadHTTP  = 24646
	tfConsulHTTP = 28500
)

// requireTofu returns the tofu binary: on PATH, or where .ci/deps.sh builds
// it ($(go env GOPATH)/bin); skips t without it.
func requireTofu(t *testing.T) string {
	if p, err := exec.LookPath("tofu"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "tofu")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("skipping: needs `tofu` (OpenTofu v1.6.3) on PATH or in $(go env GOPATH)/bin; .ci/deps.sh builds it")
	return ""
}

// tofuRender runs `tofu init` and `tofu apply` in root (a root module
// with no resource: outputs only, in a local state) and returns `tofu output
// -json`.
func tofuRender(t *testing.T, tofu, root string, env []string) []byte {
	t.Helper()
	env = append(env, "TF_CLI_CONFIG_FILE=/dev/null", "CHECKPOINT_DISABLE=1", "TF_IN_AUTOMATION=1")
	run := func(args ...string) []byte {
		cmd := exec.Command(tofu, args...)
		cmd.Dir, cmd.Env = root, env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		require.NoError(t, err, "tofu %s: %s%s", strings.Join(args, " "), out, stderr.String())
		return out
	}
	run("init", "-input=false", "-no-color")
	run("apply", "-input=false", "-no-color", "-auto-approve")
	return run("output", "-json")
}

// waitUntil polls ok every 500 ms until it is true, failing t with the
// last reason it gave after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, ok func() (bool, string)) {
	t.Helper()
	var why string
	for deadline := time.Now().Add(timeout); ; time.Sleep(500 * time.Millisecond) {
		var done bool
		if done, why = ok(); done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s after %s: %s", what, timeout, why)
		}
	}
}

// TestTerraformClusterConfigBoots renders terraform/modules/nomad-cluster-config
// with tofu for three servers and a client of class "gateway" on loopback
// (addresses, ports and folders set through the module's variables, gossip
// keys passed in), starts a Consul and a Nomad agent per machine from the
// rendered files alone, and checks that Consul and Nomad each elect a
// leader among the three servers, that Nomad registers in Consul through the
// rendered consul block, and that the client registers in its class and pool
// with the host volumes qufop's jobs need.
func TestTerraformClusterConfigBoots(t *testing.T) {
	nomadBin, consulBin := requireNomadConsul(t)
	tofu := requireTofu(t)
	module, err := filepath.Abs("../terraform/modules/nomad-cluster-config")
	require.NoError(t, err)

	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	require.NoError(t, os.Mkdir(root, 0o755))
	quoted := func(s []string) string { b, _ := json.Marshal(s); return string(b) }
	require.NoError(t, os.WriteFile(filepath.Join(root, "main.tf"), []byte(fmt.Sprintf(`
variable "dir" {
  type = string
}
variable "nomad_gossip_key" {
  type      = string
  sensitive = true
}
variable "consul_gossip_key" {
  type      = string
  sensitive = true
}

locals {
  servers = %s
  client  = %q
}

# One rendering per machine: on real machines bind_addr is a go-sockaddr
# template and every server has the same files; here each machine has its
# own loopback address and folders.
module "machine" {
  source   = %q
  for_each = toset(concat(local.servers, [local.client]))

  server_count       = 3
  retry_join         = local.servers
  datacenter         = "qufop-e2e"
  region             = "e2e"
  bind_addr          = each.key
  consul_client_addr = each.key
  consul_agent_addr  = each.key
  node_name          = replace(each.key, ".", "-")
  ports = {
    nomad_http = %d, nomad_rpc = 24647, nomad_serf = 24648,
    consul_http = %d, consul_https = 28501, consul_grpc = 28502, consul_dns = 28600,
    consul_server = 28300, consul_serf_lan = 28301, consul_serf_wan = 28302,
  }
  paths = {
    nomad_config  = "${var.dir}/${each.key}/nomad.d"
    nomad_data    = "${var.dir}/${each.key}/nomad"
    consul_config = "${var.dir}/${each.key}/consul.d"
    consul_data   = "${var.dir}/${each.key}/consul"
  }
  client_classes = { gateway = { count = 1 } }
  buckets_path   = "${var.dir}/buckets"
  registry_path  = "${var.dir}/registry"
  bucket_folders = { demo = "${var.dir}/buckets/demo", photos = "${var.dir}/photos" }

  nomad_gossip_key  = var.nomad_gossip_key
  consul_gossip_key = var.consul_gossip_key
}

output "files" {
  value = { for addr, m in module.machine : addr => addr == local.client ? {
    nomad  = m.clients.gateway.nomad_hcl
    consul = m.clients.gateway.consul_hcl
  } : {
    nomad  = m.server.nomad_hcl
    consul = m.server.consul_hcl
  } }
}

output "gossip" {
  value     = module.machine[local.client].gossip
  sensitive = true
}
`, quoted(tfServers), tfClient, module, tfNomadHTTP, tfConsulHTTP)), 0o644))

	// Gossip keys made here, as an operator would with `consul keygen`,
	// passed in the environment.
	key := func() string {
		b := make([]byte, 32)
		_, err := rand.Read(b)
		require.NoError(t, err)
		return base64.StdEncoding.EncodeToString(b)
	}
	nomadKey, consulKey := key(), key()
	env := append(os.Environ(), "TF_VAR_dir="+dir, "TF_VAR_nomad_gossip_key="+nomadKey, "TF_VAR_consul_gossip_key="+consulKey)
	start := time.Now()
	rendered := tofuRender(t, tofu, root, env)
	var out struct {
		Files struct {
			Value map[string]struct{ Nomad, Consul string }
		}
		Gossip struct {
			Value struct {
				Nomad  string `json:"nomad_hcl"`
				Consul string `json:"consul_hcl"`
			}
		}
	}
	require.NoError(t, json.Unmarshal(rendered, &out))
	t.Logf("tofu init + apply + output: %s", time.Since(start).Round(time.Millisecond))
	require.Len(t, out.Files.Value, 4)
	require.NotEmpty(t, out.Gossip.Value.Nomad)
	require.NotEmpty(t, out.Gossip.Value.Consul)

	// The files where cloud-init would write them (<config>/nomad.hcl,
	// <config>/gossip.hcl, ...), and the folders it would make.
	write := func(path, content string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	}
	for _, d := range []string{"buckets/demo", "photos", "registry"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	for addr, f := range out.Files.Value {
		write(filepath.Join(dir, addr, "nomad.d", "nomad.hcl"), f.Nomad)
		write(filepath.Join(dir, addr, "consul.d", "consul.hcl"), f.Consul)
		write(filepath.Join(dir, addr, "consul.d", "gossip.hcl"), out.Gossip.Value.Consul)
		if addr != tfClient {
			write(filepath.Join(dir, addr, "nomad.d", "gossip.hcl"), out.Gossip.Value.Nomad)
		}
	}

	// The agents as the rendered units start them (-config-dir, -config on
	// the folder); the servers first, the client last. They are ready to be
	// waited on once their HTTP API answers (the leader comes later).
	t.Setenv("CHECKPOINT_DISABLE", "1") // no update check from the agents
	machines := append(append([]string{}, tfServers...), tfClient)
	for _, addr := range machines {
		startAgent(t, consulBin, fmt.Sprintf("http://%s:%d/v1/agent/self", addr, tfConsulHTTP),
			"agent", "-config-dir", filepath.Join(dir, addr, "consul.d"))
	}
	for _, addr := range machines {
		startAgent(t, nomadBin, fmt.Sprintf("http://%s:%d/v1/agent/self", addr, tfNomadHTTP),
			"agent", "-config", filepath.Join(dir, addr, "nomad.d"))
	}

	ccfg := consulapi.DefaultConfig()
	ccfg.Address = fmt.Sprintf("%s:%d", tfClient, tfConsulHTTP)
	consul, err := consulapi.NewClient(ccfg)
	require.NoError(t, err)
	nomad, err := nomadapi.NewClient(&nomadapi.Config{Address: fmt.Sprintf("http://%s:%d", tfClient, tfNomadHTTP)})
	require.NoError(t, err)
	nomadServer, err := nomadapi.NewClient(&nomadapi.Config{Address: fmt.Sprintf("http://%s:%d", tfServers[0], tfNomadHTTP)})
	require.NoError(t, err)

	// Consul: one leader among the three servers, four members alive, all
	// in the rendered datacenter and gossiping with the key.
	waitUntil(t, 2*time.Minute, "no Consul leader", func() (bool, string) {
		leader, err := consul.Status().Leader()
		peers, err2 := consul.Status().Peers()
		if err != nil || err2 != nil || leader == "" || len(peers) != 3 {
			return false, fmt.Sprintf("leader %q (%v), peers %v (%v)", leader, err, peers, err2)
		}
		members, err := consul.Agent().Members(false)
		var alive []string
		for _, m := range members {
			if m.Status == 1 && m.Tags["dc"] == "qufop-e2e" {
				alive = append(alive, m.Name)
			}
		}
		return err == nil && len(alive) == 4, fmt.Sprintf("members alive in qufop-e2e: %v (%v)", alive, err)
	})
	ring, err := consul.Operator().KeyringList(nil)
	require.NoError(t, err, "Consul's keyring (gossip not encrypted?)")
	require.NotEmpty(t, ring)
	for _, r := range ring {
		require.Equal(t, map[string]int{consulKey: r.NumNodes}, r.Keys, "Consul's keyring (WAN: %v)", r.WAN)
	}

	// Nomad: a leader among the three servers, in region e2e, gossiping
	// with the key.
	waitUntil(t, 2*time.Minute, "no Nomad leader", func() (bool, string) {
		leader, err := nomad.Status().Leader()
		peers, err2 := nomad.Status().Peers()
		return err == nil && err2 == nil && leader != "" && len(peers) == 3,
			fmt.Sprintf("leader %q (%v), peers %v (%v)", leader, err, peers, err2)
	})
	regions, err := nomad.Regions().List()
	require.NoError(t, err)
	require.Equal(t, []string{"e2e"}, regions)
	members, err := nomadServer.Agent().Members()
	require.NoError(t, err)
	require.Len(t, members.Members, 3, "Nomad servers in the gossip pool")
	keys, err := nomadServer.Agent().ListKeys()
	require.NoError(t, err, "Nomad's keyring (gossip not encrypted?)")
	require.Equal(t, map[string]int{nomadKey: 3}, keys.Keys, "Nomad's gossip keyring")

	// Nomad reaches Consul through its rendered consul block: every agent
	// registers its services there, from its own node.
	waitUntil(t, time.Minute, "Nomad's services are not in Consul", func() (bool, string) {
		nodes := map[string][]string{}
		for _, name := range []string{"nomad", "nomad-client"} {
			entries, _, err := consul.Catalog().Service(name, "", nil)
			if err != nil {
				return false, err.Error()
			}
			for _, e := range entries {
				if !slices.Contains(nodes[name], e.Node) {
					nodes[name] = append(nodes[name], e.Node)
				}
			}
		}
		sort.Strings(nodes["nomad"])
		return strings.Join(nodes["nomad"], " ") == "127-0-0-11 127-0-0-12 127-0-0-13" &&
			strings.Join(nodes["nomad-client"], " ") == "127-0-0-14", fmt.Sprintf("nodes of the services: %v", nodes)
	})

	// The client registers in its class and pool with the host volumes.
	var node *nomadapi.Node
	waitUntil(t, 2*time.Minute, "the Nomad client is not ready", func() (bool, string) {
		nodes, _, err := nomad.Nodes().List(nil)
		if err != nil || len(nodes) != 1 || nodes[0].Status != "ready" {
			return false, fmt.Sprintf("nodes %+v (%v)", nodes, err)
		}
		node, _, err = nomad.Nodes().Info(nodes[0].ID, nil)
		return err == nil, fmt.Sprint(err)
	})
	require.Equal(t, "127-0-0-14", node.Name)
	require.Equal(t, "gateway", node.NodeClass)
	require.Equal(t, "default", node.NodePool)
	require.Equal(t, "qufop-e2e", node.Datacenter)
	volumes := map[string]string{}
	for name, v := range node.HostVolumes {
		volumes[name] = v.Path
	}
	require.Equal(t, map[string]string{
		"qufop-buckets":       filepath.Join(dir, "buckets"),
		"qufop-registry":      filepath.Join(dir, "registry"),
		"qufop-bucket-demo":   filepath.Join(dir, "buckets/demo"),
		"qufop-bucket-photos": filepath.Join(dir, "photos"),
	}, volumes, "the client's host volumes")
	// The docker plugin's volumes.enabled, once Docker is fingerprinted.
	if d := node.Drivers["docker"]; d != nil && d.Detected {
		require.Equal(t, "true", node.Attributes["driver.docker.volumes.enabled"])
	} else {
		t.Log("no Docker on this machine: the docker plugin's volumes.enabled is not checked")
	}
}

// TestTerraformClusterConfigValidates renders terraform/modules/nomad-cluster-config
// with tofu in the variants TestTerraformClusterConfigBoots does not boot
// (TLS with certificates made by `consul tls`, ACLs, five servers, a TLS
// registry, gossip keys, install from release archives) and checks every
// file with the real tools: `consul validate` and `nomad config validate` on
// each machine's config folder, daemon.json as JSON, the cloud-init
// documents as YAML whose write_files are the rendered files.
func TestTerraformClusterConfigValidates(t *testing.T) {
	nomadBin, consulBin := requireNomadConsul(t)
	tofu := requireTofu(t)
	module, err := filepath.Abs("../terraform/modules/nomad-cluster-config")
	require.NoError(t, err)
	dir := t.TempDir()

	// A CA and a server certificate, as an operator would make them.
	certs := filepath.Join(dir, "certs")
	require.NoError(t, os.Mkdir(certs, 0o755))
	for _, args := range [][]string{{"tls", "ca", "create"}, {"tls", "cert", "create", "-server", "-dc", "dc1"}} {
		cmd := exec.Command(consulBin, args...)
		cmd.Dir = certs
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, "consul %v: %s", args, b)
	}

	root := filepath.Join(dir, "root")
	require.NoError(t, os.Mkdir(root, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "main.tf"), []byte(fmt.Sprintf(`
variable "gossip_key" {
  type      = string
  sensitive = true
}

locals {
  variants = {
    plain = {}
    secure = {
      acl_enabled = true
      tls = {
        enabled   = true
        ca_file   = "%[2]s/consul-agent-ca.pem"
        cert_file = "%[2]s/dc1-server-consul-0.pem"
        key_file  = "%[2]s/dc1-server-consul-0-key.pem"
      }
      registry_tls     = true
      registry_ca_file = "%[2]s/consul-agent-ca.pem"
    }
    five = { server_count = 5, install_from = "releases" }
  }
}

module "v" {
  source   = %[1]q
  for_each = local.variants

  server_count      = lookup(each.value, "server_count", 3)
  retry_join        = lookup(each.value, "server_count", 3) == 5 ? ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"] : ["provider=aws tag_key=role tag_value=qufop-server"]
  acl_enabled       = lookup(each.value, "acl_enabled", false)
  tls               = lookup(each.value, "tls", { enabled = false })
  registry_address  = "10.0.0.21:5000"
  registry_tls      = lookup(each.value, "registry_tls", false)
  registry_ca_file  = lookup(each.value, "registry_ca_file", null)
  install_from      = lookup(each.value, "install_from", "apt")
  node_pools        = { infra = "registry and builder" }
  bucket_folders    = { demo = "/srv/qufop/buckets/demo", photos = "/data/photos" }
  nomad_gossip_key  = var.gossip_key
  consul_gossip_key = var.gossip_key
  client_classes = {
    gateway = { count = 2, registry = false, meta = { "qufop.role" = "gateway" } }
    infra   = { count = 1, buckets = false, node_pool = "infra" }
  }
}

output "v" {
  value = { for name, m in module.v : name => {
    server            = m.server
    clients           = m.clients
    gossip            = m.gossip
    server_cloud_init = m.server_cloud_init
    client_cloud_init = m.client_cloud_init
  } }
  sensitive = true
}
`, module, certs)), 0o644))

	b := make([]byte, 32)
	_, err = rand.Read(b)
	require.NoError(t, err)
	rendered := tofuRender(t, tofu, root, append(os.Environ(), "TF_VAR_gossip_key="+base64.StdEncoding.EncodeToString(b)))

	type files struct {
		Nomad      string  `json:"nomad_hcl"`
		Consul     string  `json:"consul_hcl"`
		Docker     *string `json:"docker_daemon_json"`
		NomadUnit  string  `json:"nomad_service"`
		ConsulUnit string  `json:"consul_service"`
	}
	var out struct {
		V struct {
			Value map[string]struct {
				Server  files
				Clients map[string]files
				Gossip  struct {
					Nomad  string `json:"nomad_hcl"`
					Consul string `json:"consul_hcl"`
				}
				ServerCloudInit string            `json:"server_cloud_init"`
				ClientCloudInit map[string]string `json:"client_cloud_init"`
			}
		}
	}
	require.NoError(t, json.Unmarshal(rendered, &out))
	require.Len(t, out.V.Value, 3)

	check := func(t *testing.T, f files, nomadGossip, consulGossip, cloudInit string) {
		nomadDir, consulDir := t.TempDir(), t.TempDir()
		write := func(path, content string) { require.NoError(t, os.WriteFile(path, []byte(content), 0o600)) }
		write(filepath.Join(nomadDir, "nomad.hcl"), f.Nomad)
		write(filepath.Join(consulDir, "consul.hcl"), f.Consul)
		write(filepath.Join(consulDir, "gossip.hcl"), consulGossip)
		if nomadGossip != "" {
			write(filepath.Join(nomadDir, "gossip.hcl"), nomadGossip)
		}
		b, err := exec.Command(consulBin, "validate", consulDir).CombinedOutput()
		require.NoError(t, err, "consul validate:\n%s\n%s", b, f.Consul)
		b, err = exec.Command(nomadBin, "config", "validate", nomadDir).CombinedOutput()
		require.NoError(t, err, "nomad config validate:\n%s\n%s", b, f.Nomad)
		if f.Docker != nil {
			var daemon map[string]any
			require.NoError(t, json.Unmarshal([]byte(*f.Docker), &daemon), "daemon.json: %s", *f.Docker)
		}

		require.True(t, strings.HasPrefix(cloudInit, "#cloud-config\n"), "cloud-init: %.40q", cloudInit)
		var doc struct {
			WriteFiles []struct{ Path, Content, Permissions string } `yaml:"write_files"`
			Runcmd     []string                                      `yaml:"runcmd"`
		}
		require.NoError(t, yaml.Unmarshal([]byte(cloudInit), &doc))
		written := map[string]string{}
		for _, w := range doc.WriteFiles {
			written[w.Path] = w.Content
		}
		want := map[string]string{
			"/etc/nomad.d/nomad.hcl":             f.Nomad,
			"/etc/consul.d/consul.hcl":           f.Consul,
			"/etc/consul.d/gossip.hcl":           consulGossip,
			"/etc/systemd/system/nomad.service":  f.NomadUnit,
			"/etc/systemd/system/consul.service": f.ConsulUnit,
		}
		if nomadGossip != "" {
			want["/etc/nomad.d/gossip.hcl"] = nomadGossip
		}
		if f.Docker != nil {
			want["/etc/docker/daemon.json"] = *f.Docker
		}
		require.Equal(t, want, written, "cloud-init write_files")
		require.Equal(t, "systemctl enable --now consul.service nomad.service", doc.Runcmd[len(doc.Runcmd)-1])
	}
	for name, v := range out.V.Value {
		t.Run(name+"/server", func(t *testing.T) { check(t, v.Server, v.Gossip.Nomad, v.Gossip.Consul, v.ServerCloudInit) })
		for class, c := range v.Clients {
			t.Run(name+"/"+class, func(t *testing.T) { check(t, c, "", v.Gossip.Consul, v.ClientCloudInit[class]) })
		}
	}
}
