package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

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
// config for tool that installs providers from mirror only. tofu's
// default registry host is registry.opentofu.org, so for it the mirror is
// seen through symlinks under that host name.
func tfWorkspace(t *testing.T, tool, mirror string) (dir, cliConfig string) {
	t.Helper()
	dir = t.TempDir()
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
	if tool == "tofu" {
		view := filepath.Join(dir, "mirror")
		entries, err := os.ReadDir(filepath.Join(mirror, "registry.terraform.io"))
		require.NoError(t, err)
		for _, ns := range entries {
			require.NoError(t, os.MkdirAll(filepath.Join(view, "registry.opentofu.org"), 0o755))
			require.NoError(t, os.Symlink(filepath.Join(mirror, "registry.terraform.io", ns.Name()), filepath.Join(view, "registry.opentofu.org", ns.Name())))
		}
		mirror = view
	}
	cliConfig = filepath.Join(dir, "cli.tfrc")
	require.NoError(t, os.WriteFile(cliConfig, []byte(fmt.Sprintf(`provider_installation {
  filesystem_mirror {
    path = %q
  }
}
`, mirror)), 0o644))
	return dir, cliConfig
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

// TestTerraformOpenStackExample runs init and validate of
// terraform/examples/openstack with every tool present, then plan with
// dummy credentials whose auth_url is a loopback listener of this test:
// plan must get as far as the provider (the modules and expressions
// evaluate) and fail there, and bad variables must fail with their
// validation messages. The listener only counts connections and closes
// them, so nothing but this test is ever contacted.
func TestTerraformOpenStackExample(t *testing.T) {
	tools := tfTools(t)
	mirror := requireMirror(t, openstackProvider)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var conns atomic.Int64
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

			// plan: dummy credentials against the loopback listener.
			planEnv := append(env,
				"OS_AUTH_URL=http://"+ln.Addr().String()+"/v3",
				"OS_USERNAME=dummy", "OS_PASSWORD=dummy", "OS_PROJECT_NAME=dummy",
				"OS_USER_DOMAIN_NAME=Default", "OS_PROJECT_DOMAIN_NAME=Default",
				"OS_REGION_NAME=RegionOne", "OS_MAX_RETRIES=0",
			)
			good := []string{
				"-var", "external_network=public", "-var", "image_name=debian-12", "-var", "key_pair=k",
				"-var", "server_flavor=m1.medium", "-var", "client_flavor=m1.large",
				"-var", `operator_cidrs=["203.0.113.7/32"]`, "-var", `allowed_cidrs=["0.0.0.0/0"]`,
				"-var", "nomad_gossip_key=" + gossipKey(t), "-var", "consul_gossip_key=" + gossipKey(t),
			}
			plan := func(extra ...string) string {
				args := append([]string{"plan", "-input=false", "-no-color", "-lock=false", "-refresh=false"}, good...)
				out, ok := tfRun(t, tool, root, planEnv, append(args, extra...)...)
				require.False(t, ok, "plan cannot succeed without a cloud:\n%s", out)
				return out
			}

			before := conns.Load()
			out = plan()
			require.NotContains(t, out, "Invalid value for variable", out)
			require.Contains(t, out, ln.Addr().String(), "plan should fail at the provider asking the dummy auth_url:\n%s", out)
			require.Greater(t, conns.Load(), before, "plan did not reach the loopback auth_url")

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
			}
			for what, c := range cases {
				out := plan(c.vars...)
				// The message may be wrapped across lines.
				require.Contains(t, strings.Join(strings.Fields(out), " "), c.want, "%s:\n%s", what, out)
			}
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
