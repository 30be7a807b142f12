package e2e

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The OpenStack example root (terraform/examples/openstack) cannot be
// applied here: that needs a cloud. What can be checked without one is that
// it initialises from a local provider mirror, validates, and that its
// variable validations refuse bad input with their messages before any
// cloud is asked. The mirror is a filesystem_mirror folder holding
// registry.terraform.io/terraform-provider-openstack/openstack (and
// hashicorp/nomad for the platform root), named by QUFOP_TF_MIRROR.

const openstackProvider = "terraform-provider-openstack/openstack"

// tfTools returns the Terraform-compatible tools to check with: terraform
// (QUFOP_TERRAFORM, else PATH) and tofu (PATH or $(go env GOPATH)/bin),
// each that exists; skips t with neither.
func tfTools(t *testing.T) map[string]string {
	tools := map[string]string{}
	if p := os.Getenv("QUFOP_TERRAFORM"); p != "" {
		tools["terraform"] = p
	} else if p, err := exec.LookPath("terraform"); err == nil {
		tools["terraform"] = p
	}
	if p, err := exec.LookPath("tofu"); err == nil {
		tools["tofu"] = p
	} else if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "tofu")
		if _, err := os.Stat(p); err == nil {
			tools["tofu"] = p
		}
	}
	if len(tools) == 0 {
		t.Skip("skipping: needs terraform (QUFOP_TERRAFORM or PATH; 1.5.x) or tofu (OpenTofu 1.6) to validate terraform/examples/openstack")
	}
	return tools
}

// requireMirror returns QUFOP_TF_MIRROR after checking it holds every
// provider given (namespace/type, as in registry.terraform.io's layout);
// skips t otherwise.
func requireMirror(t *testing.T, providers ...string) string {
	mirror := os.Getenv("QUFOP_TF_MIRROR")
	if mirror == "" {
		t.Skip("skipping: set QUFOP_TF_MIRROR to a Terraform filesystem mirror holding " + strings.Join(providers, " and ") + " (registry.terraform.io/<namespace>/<type>/<version>/linux_amd64/...)")
	}
	for _, p := range providers {
		if _, err := os.Stat(filepath.Join(mirror, "registry.terraform.io", p)); err != nil {
			t.Skipf("skipping: QUFOP_TF_MIRROR=%s has no registry.terraform.io/%s", mirror, p)
		}
	}
	return mirror
}

// tfWorkspace copies terraform/ and jobspecs/*.nomad.hcl (which the
// platform module reads) into a temporary folder, so that init's
// .terraform and lock file never land in the tree, and writes a CLI
// config for tool that installs providers from mirror only.
func tfWorkspace(t *testing.T, tool, mirror string) (dir, cliConfig string) {
	t.Helper()
	dir = tfTree(t)
	return dir, mirrorConfig(t, dir, tool, mirror)
}

// tfTree copies terraform/ and jobspecs/*.nomad.hcl into a new folder,
// without working files (.terraform, state, tfvars, lock files).
func tfTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, src := range []string{"../terraform", "../jobspecs"} {
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel("..", p)
			dst := filepath.Join(dir, rel)
			if d.IsDir() {
				if d.Name() == ".terraform" {
					return filepath.SkipDir
				}
				return os.MkdirAll(dst, 0o755)
			}
			if src == "../jobspecs" && !strings.HasSuffix(p, ".nomad.hcl") {
				return nil
			}
			if strings.HasSuffix(p, ".tfstate") || strings.HasSuffix(p, ".tfvars") || d.Name() == ".terraform.lock.hcl" {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(dst, b, 0o644)
		})
		require.NoError(t, err)
	}
	return dir
}

// mirrorConfig writes into dir a CLI config that installs every provider
// from mirror (a registry.terraform.io layout) and nothing from anywhere
// else. tofu's default registry host is registry.opentofu.org, so for it
// the mirror is seen through links under that host name.
func mirrorConfig(t *testing.T, dir, tool, mirror string) string {
	t.Helper()
	if tool == "tofu" {
		// Folders made, files linked: the mirror search does not descend
		// into a symlinked folder.
		view := filepath.Join(dir, "mirror")
		from := filepath.Join(mirror, "registry.terraform.io")
		err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(from, p)
			dst := filepath.Join(view, "registry.opentofu.org", rel)
			if d.IsDir() {
				return os.MkdirAll(dst, 0o755)
			}
			return os.Symlink(p, dst)
		})
		require.NoError(t, err)
		mirror = view
	}
	cliConfig := filepath.Join(dir, "cli.tfrc")
	require.NoError(t, os.WriteFile(cliConfig, []byte(fmt.Sprintf(`provider_installation {
  filesystem_mirror {
    path = %q
  }
}
`, mirror)), 0o644))
	return cliConfig
}

// tfRun runs tool in dir with env only (none of the caller's OS_* or
// TF_VAR_* variables, so no real cloud is ever configured) and returns its
// combined output and whether it succeeded.
func tfRun(t *testing.T, tool, dir string, env []string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(tool, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

func tfEnv(dir, cliConfig string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir, // no clouds.yaml of the user's
		"TF_CLI_CONFIG_FILE=" + cliConfig,
		"TF_IN_AUTOMATION=1",
		"CHECKPOINT_DISABLE=1",
	}
}

// fakeOpenStack is the little of Keystone and Neutron that a plan of
// terraform/examples/openstack asks for, on loopback: a token whose catalog
// points back here, and the external network "public". Anything else is a
// 404 and is recorded, so the test sees every request the plan made.
type fakeOpenStack struct {
	base string
	mu   sync.Mutex
	reqs []string
}

func startFakeOpenStack(t *testing.T) *fakeOpenStack {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &fakeOpenStack{base: "http://" + ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(f.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

func (f *fakeOpenStack) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r.Method+" "+r.URL.Path)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v3/auth/tokens":
		endpoint := func(typ, path string) string {
			return fmt.Sprintf(`{"type":%q,"id":%q,"endpoints":[{"id":"e-%s","interface":"public","region":"RegionOne","region_id":"RegionOne","url":"%s%s"}]}`, typ, typ, typ, f.base, path)
		}
		w.Header().Set("X-Subject-Token", "dummy-token")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"token":{"expires_at":"2099-01-01T00:00:00.000000Z","issued_at":"2026-01-01T00:00:00.000000Z","methods":["password"],`+
			`"user":{"id":"u","name":"dummy","domain":{"id":"default","name":"Default"}},"project":{"id":"p","name":"dummy","domain":{"id":"default","name":"Default"}},`+
			`"catalog":[%s,%s]}}`, endpoint("network", "/network"), endpoint("compute", "/compute/v2.1"))
	case r.Method == http.MethodGet && r.URL.Path == "/network/v2.0/networks" && r.URL.Query().Get("name") == "public":
		fmt.Fprint(w, `{"networks":[{"id":"00000000-0000-0000-0000-0000000000e1","name":"public","router:external":true,"status":"ACTIVE","admin_state_up":true,"subnets":[],"project_id":"p","tenant_id":"p"}]}`)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":"not faked"}`)
	}
}

func (f *fakeOpenStack) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

// planJSON is what the test reads of `show -json` of a saved plan.
type planJSON struct {
	ResourceChanges []struct {
		Address string `json:"address"`
		Type    string `json:"type"`
		Change  struct {
			Actions []string       `json:"actions"`
			After   map[string]any `json:"after"`
		} `json:"change"`
	} `json:"resource_changes"`
	PlannedValues json.RawMessage `json:"planned_values"`
}

// TestTerraformOpenStackExample runs init and validate of
// terraform/examples/openstack with every tool present, then a whole plan
// of the example variables file against a loopback fake of Keystone and
// Neutron (the only two calls a plan makes: a token and the external
// network). The plan JSON must hold exactly the ingress rules the README
// lists, the fixed addresses, the machines of the example's classes with
// only a SHA-1 of their user data, and the gossip keys nowhere in what
// would be stored. Bad variables must fail with their validation messages.
func TestTerraformOpenStackExample(t *testing.T) {
	tools := tfTools(t)
	mirror := requireMirror(t, openstackProvider)
	cloud := startFakeOpenStack(t)

	for name, tool := range tools {
		t.Run(name, func(t *testing.T) {
			dir, cliConfig := tfWorkspace(t, name, mirror)
			root := filepath.Join(dir, "terraform", "examples", "openstack")
			env := tfEnv(dir, cliConfig)

			out, ok := tfRun(t, tool, root, env, "init", "-backend=false", "-input=false", "-no-color")
			require.True(t, ok, "%s init:\n%s", name, out)
			require.Contains(t, out, "terraform-provider-openstack/openstack v3.4.0")
			out, ok = tfRun(t, tool, root, env, "validate", "-no-color")
			require.True(t, ok, "%s validate:\n%s", name, out)
			require.Contains(t, out, "The configuration is valid")

			// Dummy credentials; the only cloud is the fake on loopback.
			nomadKey, consulKey := gossipKey(t), gossipKey(t)
			planEnv := append(env,
				"OS_AUTH_URL="+cloud.base+"/v3",
				"OS_USERNAME=dummy", "OS_PASSWORD=dummy", "OS_PROJECT_NAME=dummy",
				"OS_USER_DOMAIN_NAME=Default", "OS_PROJECT_DOMAIN_NAME=Default",
				"OS_REGION_NAME=RegionOne", "OS_MAX_RETRIES=0",
				"TF_VAR_nomad_gossip_key="+nomadKey, "TF_VAR_consul_gossip_key="+consulKey,
			)
			before := len(cloud.requests())
			planFile := filepath.Join(dir, "example.tfplan")
			out, ok = tfRun(t, tool, root, planEnv, "plan", "-input=false", "-no-color", "-lock=false",
				"-var-file=terraform.tfvars.example", "-out="+planFile)
			require.True(t, ok, "plan of terraform.tfvars.example:\n%s", out)
			assert.ElementsMatch(t, []string{"POST /v3/auth/tokens", "GET /network/v2.0/networks"}, cloud.requests()[before:],
				"the plan's requests to the (fake) cloud")
			raw, ok := tfRun(t, tool, root, env, "show", "-json", planFile)
			require.True(t, ok, raw)
			var plan planJSON
			require.NoError(t, json.Unmarshal([]byte(raw), &plan), raw)

			// What would be stored holds no gossip key.
			stored, _ := json.Marshal(plan.ResourceChanges)
			for _, k := range []string{nomadKey, consulKey} {
				assert.NotContains(t, string(stored), k, "a gossip key in the planned resources")
				assert.NotContains(t, string(plan.PlannedValues), k, "a gossip key in the planned values")
			}

			rules := map[string]string{}
			instances := map[string]string{}
			fixed := map[string]any{}
			floating := 0
			for _, rc := range plan.ResourceChanges {
				require.Equal(t, []string{"create"}, rc.Change.Actions, rc.Address)
				a := rc.Change.After
				switch rc.Type {
				case "openstack_networking_secgroup_rule_v2":
					require.Equal(t, "ingress", a["direction"], rc.Address)
					from := "the cluster group"
					if p, ok := a["remote_ip_prefix"].(string); ok && p != "" {
						from = p
					}
					rules[rc.Address] = fmt.Sprintf("%v %v-%v from %s", a["protocol"], a["port_range_min"], a["port_range_max"], from)
				case "openstack_compute_instance_v2":
					instances[a["name"].(string)] = a["flavor_name"].(string)
					assert.Regexp(t, "^[0-9a-f]{40}$", a["user_data"], "%s: the state keeps the user data's SHA-1 only", rc.Address)
				case "openstack_networking_port_v2":
					ips := a["fixed_ip"].([]any)
					require.Len(t, ips, 1, rc.Address)
					fixed[a["name"].(string)] = ips[0].(map[string]any)["ip_address"]
				case "openstack_networking_floatingip_v2":
					floating++
				case "openstack_networking_subnet_v2":
					assert.Equal(t, "10.40.0.0/24", a["cidr"])
					assert.Equal(t, []any{map[string]any{"start": "10.40.0.100", "end": "10.40.0.254"}}, a["allocation_pool"])
				}
			}
			member := func(key, rule string) (string, string) {
				return `openstack_networking_secgroup_rule_v2.member["` + key + `"]`, rule + " from the cluster group"
			}
			want := map[string]string{}
			for key, rule := range map[string]string{
				"nomad-http": "tcp 4646-4646", "nomad-rpc": "tcp 4647-4647", "nomad-serf-tcp": "tcp 4648-4648", "nomad-serf-udp": "udp 4648-4648",
				"consul-rpc": "tcp 8300-8300", "consul-serf-tcp": "tcp 8301-8302", "consul-serf-udp": "udp 8301-8302",
				"consul-http": "tcp 8500-8501", "consul-dns-tcp": "tcp 8600-8600", "consul-dns-udp": "udp 8600-8600",
				"registry": "tcp 5000-5000", "gateway": "tcp 8080-8080", "management": "tcp 8081-8081",
				"nomad-dynamic-port": "tcp 20000-32000",
			} {
				k, v := member(key, rule)
				want[k] = v
			}
			for key, rule := range map[string]string{
				"server-ssh-203.0.113.7/32":   "tcp 22-22 from 203.0.113.7/32",
				"server-nomad-203.0.113.7/32": "tcp 4646-4646 from 203.0.113.7/32",
				"client-ssh-203.0.113.7/32":   "tcp 22-22 from 203.0.113.7/32",
				"client-gateway-0.0.0.0/0":    "tcp 8080-8080 from 0.0.0.0/0",
				"client-management-0.0.0.0/0": "tcp 8081-8081 from 0.0.0.0/0",
			} {
				want[`openstack_networking_secgroup_rule_v2.outside["`+key+`"]`] = rule
			}
			assert.Equal(t, want, rules, "the ingress rules, exactly")
			assert.Equal(t, map[string]string{
				"qufop-server-0": "m1.medium", "qufop-server-1": "m1.medium", "qufop-server-2": "m1.medium",
				"qufop-gateway-0": "m1.large", "qufop-gateway-1": "m1.large", "qufop-infra-0": "m1.large",
			}, instances)
			assert.Equal(t, map[string]any{
				"qufop-server-0": "10.40.0.10", "qufop-server-1": "10.40.0.11", "qufop-server-2": "10.40.0.12",
				"qufop-infra-0": "10.40.0.20", "qufop-gateway-0": nil, "qufop-gateway-1": nil,
			}, fixed, "fixed addresses: servers and the registry machine; DHCP for the rest")
			assert.Equal(t, 6, floating, "a floating IP per machine")

			good := []string{
				"-var", "external_network=public", "-var", "image_name=debian-12", "-var", "key_pair=k",
				"-var", "server_flavor=m1.medium", "-var", "client_flavor=m1.large",
				"-var", `operator_cidrs=["203.0.113.7/32"]`, "-var", `allowed_cidrs=["0.0.0.0/0"]`,
			}
			cases := map[string]struct {
				vars []string
				want string
			}{
				"two registry machines": {[]string{"-var", `client_classes={a = { count = 2 }}`}, "exactly one machine with registry = true"},
				"no registry machine":   {[]string{"-var", `client_classes={a = { count = 2, registry = false }}`}, "exactly one machine with registry = true"},
				"even server count":     {[]string{"-var", "server_count=4"}, "server_count must be 3 or 5"},
				"operator address only": {[]string{"-var", `operator_cidrs=["203.0.113.7"]`}, "operator_cidrs must list IPv4 CIDRs"},
				"small subnet":          {[]string{"-var", "subnet_cidr=10.0.0.0/25"}, "prefix of /24 or shorter"},
				"bad prefix":            {[]string{"-var", "name_prefix=Qufop_1"}, "name_prefix must be"},
				"class not a host name": {[]string{"-var", `client_classes={gpu_nodes = { count = 1 }}`}, "client_classes names must be 1 to 24 lower-case letters"},
			}
			for what, c := range cases {
				args := append([]string{"plan", "-input=false", "-no-color", "-lock=false"}, good...)
				out, ok := tfRun(t, tool, root, planEnv, append(args, c.vars...)...)
				require.False(t, ok, "%s: plan should fail:\n%s", what, out)
				// The message may be wrapped across lines.
				require.Contains(t, strings.Join(strings.Fields(out), " "), c.want, "%s:\n%s", what, out)
			}
		})
	}
}

// TestTerraformOpenStackPlatformStage checks the second stage,
// terraform/examples/openstack/platform: init and validate, then plan on a
// stage-1 state made for the test (an outputs-only root applied in the
// place of ../terraform.tfstate, with the outputs stage 1 has) whose
// nomad_addr is a loopback listener of this test. The plan must read the
// state, configure the Nomad provider from it and fail asking that
// address: the provider is configured from the cluster's outputs, with no
// address given by hand.
func TestTerraformOpenStackPlatformStage(t *testing.T) {
	tools := tfTools(t)
	mirror := requireMirror(t, "hashicorp/nomad")
	if _, err := os.Stat("../terraform/modules/qufop-platform/main.tf"); err != nil {
		t.Skip("skipping: terraform/modules/qufop-platform is not in this tree")
	}

	addr, conns := loopbackSink(t)

	for name, tool := range tools {
		t.Run(name, func(t *testing.T) {
			dir, cliConfig := tfWorkspace(t, name, mirror)
			stage1 := filepath.Join(dir, "terraform", "examples", "openstack")
			root := filepath.Join(stage1, "platform")
			env := tfEnv(dir, cliConfig)

			out, ok := tfRun(t, tool, root, env, "init", "-backend=false", "-input=false", "-no-color")
			require.True(t, ok, "%s init:\n%s", name, out)
			out, ok = tfRun(t, tool, root, env, "validate", "-no-color")
			require.True(t, ok, "%s validate:\n%s", name, out)
			require.Contains(t, out, "The configuration is valid")

			// Stage 1's outputs, as outputs.tf there makes them; ports other
			// than the jobspecs' defaults, to see them reach the jobs.
			fake := filepath.Join(dir, "stage1")
			require.NoError(t, os.Mkdir(fake, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(fake, "main.tf"), []byte(fmt.Sprintf(`
output "nomad_addr" {
  value = "http://%s"
}
output "platform" {
  value = {
    datacenter       = "dc7"
    buckets          = ["demo", "photos"]
    registry_address = "10.40.0.20:15000"
    registry_port    = 15000
    gateway_port     = 18080
    management_port  = 18081
    node_addresses   = { "qufop-gateway-0" = "203.0.113.10", "qufop-infra-0" = "203.0.113.11" }
  }
}
`, addr)), 0o644))
			out, ok = tfRun(t, tool, fake, env, "apply", "-input=false", "-no-color", "-auto-approve", "-state="+filepath.Join(stage1, "terraform.tfstate"))
			require.True(t, ok, "stage-1 state: %s", out)

			// plan of new jobs asks Nomad nothing; apply registers them, so
			// it is apply that must fail at stage 1's nomad_addr (the
			// sink: nothing else is contacted, and nothing is made).
			planFile := filepath.Join(dir, "platform.tfplan")
			out, ok = tfRun(t, tool, root, env, "plan", "-input=false", "-no-color", "-lock=false", "-out="+planFile)
			require.True(t, ok, "plan:\n%s", out)
			raw, ok := tfRun(t, tool, root, env, "show", "-json", planFile)
			require.True(t, ok, raw)
			var plan planJSON
			require.NoError(t, json.Unmarshal([]byte(raw), &plan), raw)
			vars := map[string]map[string]any{}
			for _, rc := range plan.ResourceChanges {
				if rc.Type == "nomad_job" {
					job := strings.TrimSuffix(strings.TrimPrefix(rc.Address, `module.platform.nomad_job.platform["`), `"]`)
					vars[job] = rc.Change.After["hcl2"].([]any)[0].(map[string]any)["vars"].(map[string]any)
				}
			}
			require.Len(t, vars, 4, raw)
			// The ports the security groups open, the registry, datacenter
			// and buckets: all from stage 1's state.
			assert.Equal(t, "15000", vars["registry"]["port"])
			assert.Equal(t, "18081", vars["builder"]["port"])
			assert.Equal(t, "10.40.0.20:15000", vars["builder"]["registry"])
			assert.Equal(t, "18080", vars["gateway"]["port"])
			assert.JSONEq(t, `["demo","photos"]`, vars["gateway"]["buckets"].(string))
			for job, v := range vars {
				assert.JSONEq(t, `["dc7"]`, v["datacenters"].(string), job)
			}
			assert.Equal(t, "registry:2.8.3", vars["registry"]["image"], "the cloud's machines pull the upstream registry")
			before := conns.Load()
			out, ok = tfRun(t, tool, root, env, "apply", "-input=false", "-no-color", "-lock=false", "-auto-approve")
			require.False(t, ok, "apply cannot succeed without Nomad:\n%s", out)
			require.Contains(t, out, addr, "apply should fail asking stage 1's nomad_addr:\n%s", out)
			require.Greater(t, conns.Load(), before, "apply did not reach stage 1's nomad_addr")

			// Without stage 1's state, plan says so.
			require.NoError(t, os.Remove(filepath.Join(stage1, "terraform.tfstate")))
			out, ok = tfRun(t, tool, root, env, "plan", "-input=false", "-no-color", "-lock=false")
			require.False(t, ok, out)
			require.Contains(t, strings.Join(strings.Fields(out), " "), "No stage-1 state at ../terraform.tfstate", out)
		})
	}
}

// loopbackSink listens on a free loopback port until t ends, counting and
// closing every connection: the address a plan is pointed at, so that it
// fails there having contacted nothing else.
func loopbackSink(t *testing.T) (string, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	conns := new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().String(), conns
}

// qufopProvider returns a terraform-provider-qufop binary: QUFOP_PROVIDER_BIN,
// else one built from ./cmd/terraform-provider-qufop; skips t without either.
func qufopProvider(t *testing.T, dir string) string {
	if p := os.Getenv("QUFOP_PROVIDER_BIN"); p != "" {
		return p
	}
	if _, err := os.Stat("../cmd/terraform-provider-qufop"); err != nil {
		t.Skip("skipping: no cmd/terraform-provider-qufop in this tree and no QUFOP_PROVIDER_BIN")
	}
	bin := filepath.Join(dir, "terraform-provider-qufop")
	goBuild(t, bin, "./cmd/terraform-provider-qufop", false)
	return bin
}

// TestTerraformOpenStackUFOPStage applies stage 3 of terraform/README.md,
// terraform/examples/openstack/ufops, as written there (the provider from
// a filesystem mirror named by TF_CLI_CONFIG_FILE, the management address
// and keys in QUFOP_ADDR, QUFOP_ACCESS_KEY, QUFOP_SECRET_KEY, the source a
// folder demo/ made from examples/ufop-demo), on a `qufop dev` of its own
// instead of a cluster's builder: the UFOP is registered, built and runs
// two healthy instances, its processing URL answers with the sample's MD5,
// and destroy unregisters it.
func TestTerraformOpenStackUFOPStage(t *testing.T) {
	tools := tfTools(t)
	work := t.TempDir()
	provider := qufopProvider(t, work)
	p := startPlatform(t)

	// The mirror and CLI config `make provider-mirror` makes (terraform/README.md,
	// "What you need"), offline: no direct block.
	mirror := filepath.Join(work, "mirror")
	b, err := os.ReadFile(provider)
	require.NoError(t, err)
	for _, host := range []string{"registry.terraform.io", "registry.opentofu.org"} {
		pdir := filepath.Join(mirror, host, "qufop", "qufop", "0.1.0", "linux_amd64")
		require.NoError(t, os.MkdirAll(pdir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(pdir, "terraform-provider-qufop_v0.1.0"), b, 0o755))
	}
	cliConfig := filepath.Join(work, "qufop.tfrc")
	require.NoError(t, os.WriteFile(cliConfig, []byte(fmt.Sprintf(`provider_installation {
  filesystem_mirror {
    path    = %q
    include = ["registry.terraform.io/qufop/qufop", "registry.opentofu.org/qufop/qufop"]
  }
}
`, mirror)), 0o644))

	demoBin := filepath.Join(work, "ufop-demo")
	goBuild(t, demoBin, "./examples/ufop-demo", false)
	for name, tool := range tools {
		t.Run(name, func(t *testing.T) {
			dir := tfTree(t)
			root := filepath.Join(dir, "terraform", "examples", "openstack", "ufops")
			spec, err := os.ReadFile("../examples/ufop-demo/ufop.yaml") // local/busybox:1, which this machine has
			require.NoError(t, err)
			require.NoError(t, os.MkdirAll(filepath.Join(root, "demo"), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(root, "demo", "ufop.yaml"), spec, 0o644))
			b, err := os.ReadFile(demoBin)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(root, "demo", "ufop-demo"), b, 0o755))

			ufop := fmt.Sprintf("tf-demo-%d", time.Now().UnixNano()%1e6)
			env := append(tfEnv(dir, cliConfig), "QUFOP_ADDR="+p.base, "QUFOP_ACCESS_KEY="+ak, "QUFOP_SECRET_KEY="+sk,
				"QUFOP_CONFIG="+filepath.Join(work, "cli.json"))
			run := func(args ...string) string {
				t.Helper()
				out, ok := tfRun(t, tool, root, env, args...)
				require.True(t, ok, "%s %s:\n%s", name, strings.Join(args, " "), out)
				return out
			}
			run("init", "-input=false", "-no-color")
			destroyed := false
			t.Cleanup(func() {
				if !destroyed {
					tfRun(t, tool, root, env, "destroy", "-input=false", "-no-color", "-auto-approve", "-var", "name="+ufop)
				}
			})
			run("apply", "-input=false", "-no-color", "-auto-approve", "-var", "name="+ufop)

			var outs struct {
				Version, Healthy struct {
					Value int `json:"value"`
				}
				Image struct {
					Value string `json:"value"`
				}
			}
			raw := run("output", "-json")
			t.Logf("%s: stage 3 outputs %s", name, strings.Join(strings.Fields(raw), " "))
			require.NoError(t, json.Unmarshal([]byte(strings.NewReplacer(`"healthy_instances"`, `"Healthy"`).Replace(raw)), &outs), raw)
			assert.Equal(t, 1, outs.Version.Value, raw)
			assert.Equal(t, 2, outs.Healthy.Value, raw)
			assert.Contains(t, outs.Image.Value, ufop+":v1", raw)

			sample, err := os.ReadFile("../platform/sample/sample.jpg")
			require.NoError(t, err)
			sum := md5.Sum(sample)
			code, _, body := p.get("/demo/sample.jpg?" + ufop + "/md5")
			require.Equal(t, 200, code, body)
			assert.JSONEq(t, fmt.Sprintf(`{"hash":%q}`, hex.EncodeToString(sum[:])), body)
			t.Logf("GET /demo/sample.jpg?%s/md5: %s", ufop, body)
			code, _, body = p.get("/demo/sample.jpg?imageView2/2/w/200|" + ufop + "/wc")
			require.Equal(t, 200, code, body)
			assert.Contains(t, body, `"bytes":`)

			run("destroy", "-input=false", "-no-color", "-auto-approve", "-var", "name="+ufop)
			destroyed = true
			assert.NotContains(t, p.must("list"), ufop)
		})
	}
}

// gossipKey is a fresh 32-byte key in base64, as `consul keygen` prints.
func gossipKey(t *testing.T) string {
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return base64.StdEncoding.EncodeToString(b)
}
