package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/control/api"
)

// tfProviderVersion is the version the test installs the provider as in
// its filesystem mirror.
const tfProviderVersion = "0.0.1"

// tfCLI is tofu (or TF_ACC_TERRAFORM, e.g. Terraform 1.5.7) run in one
// root module folder against one qufop dev, with a CLI configuration that
// installs the qufop provider from a filesystem mirror and nothing else.
type tfCLI struct {
	t   *testing.T
	bin string
	env []string
}

// requireTerraformCLI is $TF_ACC_TERRAFORM, else tofu (skipping without it).
func requireTerraformCLI(t *testing.T) string {
	if p := os.Getenv("TF_ACC_TERRAFORM"); p != "" {
		_, err := os.Stat(p)
		require.NoError(t, err, "TF_ACC_TERRAFORM")
		return p
	}
	return requireTofu(t)
}

// providerMirror builds terraform-provider-qufop into a filesystem mirror
// under work, for OpenTofu's and Terraform's default registry hosts, and
// writes a CLI configuration that installs only it, from there. It returns
// the configuration's path.
func providerMirror(t *testing.T, work string) string {
	mirror := filepath.Join(work, "mirror")
	platform := runtime.GOOS + "_" + runtime.GOARCH
	var first string
	for _, host := range []string{"registry.opentofu.org", "registry.terraform.io"} {
		dir := filepath.Join(mirror, host, "qufop", "qufop", tfProviderVersion, platform)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		bin := filepath.Join(dir, "terraform-provider-qufop_v"+tfProviderVersion)
		if first == "" {
			goBuild(t, bin, "./cmd/terraform-provider-qufop", false)
			first = bin
			continue
		}
		require.NoError(t, os.WriteFile(bin, mustRead(t, first), 0o755))
	}
	// No direct block: nothing may be downloaded. A hostname wildcard is
	// refused unless the namespace and type are wildcards too, so both
	// hosts are named.
	rc := filepath.Join(work, "terraformrc")
	require.NoError(t, os.WriteFile(rc, []byte(fmt.Sprintf(`provider_installation {
  filesystem_mirror {
    path    = %q
    include = ["registry.opentofu.org/qufop/qufop", "registry.terraform.io/qufop/qufop"]
  }
}
`, mirror)), 0o644))
	return rc
}

// run runs the CLI in dir and returns its output (stdout and stderr) and
// exit code; a failure to start fails the test.
func (c *tfCLI) run(dir string, args ...string) (string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir, cmd.Env = dir, c.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), ee.ExitCode()
	}
	require.NoError(c.t, err, "%s %s", c.bin, strings.Join(args, " "))
	return out.String(), 0
}

// must runs the CLI and wants exit 0.
func (c *tfCLI) must(dir string, args ...string) string {
	c.t.Helper()
	out, code := c.run(dir, args...)
	require.Equal(c.t, 0, code, "%s %s:\n%s", filepath.Base(c.bin), strings.Join(args, " "), out)
	return out
}

func (c *tfCLI) apply(dir string) string {
	c.t.Helper()
	return c.must(dir, "apply", "-input=false", "-no-color", "-auto-approve")
}

// plan runs plan -detailed-exitcode: 0 no changes, 2 changes.
func (c *tfCLI) plan(dir string) (string, int) {
	c.t.Helper()
	out, code := c.run(dir, "plan", "-input=false", "-no-color", "-detailed-exitcode")
	require.NotEqual(c.t, 1, code, "plan failed:\n%s", out)
	return out, code
}

// noChanges wants an empty plan.
func (c *tfCLI) noChanges(dir, why string) {
	c.t.Helper()
	out, code := c.plan(dir)
	require.Equal(c.t, 0, code, "%s: the plan should be empty:\n%s", why, out)
}

// oneLine is s with every run of white space made one space: the CLI
// wraps diagnostics to its width.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// rootModule writes main.tf into dir (made if missing).
func rootModule(t *testing.T, dir, body string) {
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.tf"), []byte(`terraform {
  required_providers {
    qufop = { source = "qufop/qufop" }
  }
}

provider "qufop" {}
`+body), 0o644))
}

// waitHealthy waits until the UFOP runs n healthy instances of version
// and no others, its last operation done.
func waitHealthy(t *testing.T, c *client.Client, name string, n, version int) {
	t.Helper()
	waitUntil(t, 3*time.Minute, fmt.Sprintf("%s: %d healthy instances of version %d", name, n, version), func() (bool, string) {
		st, err := c.State(context.Background(), name)
		if err != nil {
			return false, err.Error()
		}
		healthy := 0
		for _, in := range st.Instances {
			if in.Version == version && in.Healthy {
				healthy++
			}
		}
		done := st.Operation == nil || st.Operation.Done
		return done && healthy == n && len(st.Instances) == n, fmt.Sprintf("%+v, operation %+v", st.Instances, st.Operation)
	})
}

// TestTerraformProvider drives terraform/provider through the real tofu
// CLI (or $TF_ACC_TERRAFORM) against a real `qufop dev --no-docker` on
// loopback, the provider installed from a filesystem mirror chosen by
// TF_CLI_CONFIG_FILE: create (reg, a build, one instance, a processing URL
// served by it), update (a changed source: a new version and a gray
// upgrade), drift (a resize behind Terraform's back), a scale policy and
// the refusal of a count with it, import of a UFOP made through the API,
// a failing build (its failing line in apply's output) and destroy
// (Info answers 404).
func TestTerraformProvider(t *testing.T) {
	tf := requireTerraformCLI(t)
	work := t.TempDir()
	bin := filepath.Join(work, "qufop")
	goBuild(t, bin, "./cmd/qufop", true)
	demoBin := filepath.Join(work, "ufop-demo")
	goBuild(t, demoBin, "./examples/ufop-demo", false)
	rc := providerMirror(t, work)
	base, _ := startDev(t, bin, work)
	ctx := context.Background()
	admin := client.New(base, auth.Credentials{AccessKey: ak, SecretKey: sk})

	const name, imported, broken = "tf-acc", "tf-acc-imp", "tf-acc-bad"
	// Whatever a failure leaves registered goes before qufop dev stops
	// (cleanups run last first), taking its instances with it.
	t.Cleanup(func() {
		for _, n := range []string{name, imported, broken} {
			_, _ = admin.ScalePolicyOff(ctx, n)
			_, _ = admin.Unregister(ctx, n)
		}
	})

	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TF_") && !strings.HasPrefix(kv, "QUFOP_") {
			env = append(env, kv)
		}
	}
	env = append(env, "TF_CLI_CONFIG_FILE="+rc, "CHECKPOINT_DISABLE=1", "TF_IN_AUTOMATION=1",
		"QUFOP_ADDR="+base, "QUFOP_ACCESS_KEY="+ak, "QUFOP_SECRET_KEY="+sk,
		"QUFOP_CONFIG="+filepath.Join(work, "no-login.json")) // no saved login of the machine's user
	c := &tfCLI{t: t, bin: tf, env: env}
	t.Log(strings.SplitN(c.must(work, "version"), "\n", 2)[0])

	// The answer the demo UFOP's md5 gives for the demo bucket's sample.
	r, err := http.Get(base + "/demo/sample.jpg")
	require.NoError(t, err)
	sample, err := io.ReadAll(r.Body)
	r.Body.Close()
	require.NoError(t, err)
	sum := md5.Sum(sample)
	wantMD5 := fmt.Sprintf(`{"hash":"%s"}`, hex.EncodeToString(sum[:]))
	processed := func() (int, string) {
		r, err := http.Get(base + "/demo/sample.jpg?" + name + "/md5")
		require.NoError(t, err)
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, strings.TrimSpace(string(b))
	}

	// Create.
	src := demoSource(t, demoBin, "handler", "")
	main := filepath.Join(work, "main")
	desc := "made by Terraform"
	deployment := func(count string) string {
		return fmt.Sprintf(`
resource "qufop_ufop" "demo" {
  name        = %q
  mode        = "public"
  description = %q
}

resource "qufop_ufop_version" "demo" {
  ufop   = qufop_ufop.demo.id
  source = %q
}

resource "qufop_ufop_deployment" "demo" {
  ufop    = qufop_ufop.demo.id
  version = qufop_ufop_version.demo.version
%s
}

data "qufop_ufop" "demo" {
  name = qufop_ufop_deployment.demo.ufop
}

output "healthy" {
  value = length([for i in data.qufop_ufop.demo.instances : i if i.healthy])
}
`, name, desc, src, count)
	}
	rootModule(t, main, deployment("  instances = 1"))
	c.must(main, "init", "-input=false", "-no-color")
	c.apply(main)
	rec, err := admin.Info(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, "public", rec.Mode)
	assert.Equal(t, "made by Terraform", rec.Description)
	assert.Equal(t, 1, rec.Current)
	assert.Equal(t, 1, rec.Desired)
	waitHealthy(t, admin, name, 1, 1)
	code, body := processed()
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, wantMD5, body)
	var outputs struct {
		Healthy struct{ Value int } `json:"healthy"`
	}
	require.NoError(t, json.Unmarshal([]byte(c.must(main, "output", "-json")), &outputs))
	assert.Equal(t, 1, outputs.Healthy.Value, "the data source's healthy instances")
	c.noChanges(main, "after create")

	// Update: a changed source is a new version, which the deployment
	// follows with a gray upgrade.
	spec := filepath.Join(src, "ufop.yaml")
	require.NoError(t, os.WriteFile(spec, append(mustRead(t, spec), []byte("env:\n  BUILD: \"2\"\n")...), 0o755))
	out, code := c.plan(main)
	require.Equal(t, 2, code, out)
	assert.Contains(t, out, "qufop_ufop_version.demo must be replaced")
	assert.Contains(t, out, "source_hash")
	c.apply(main)
	st, err := admin.State(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, 2, st.Current)
	assert.Equal(t, 2, st.Deployed)
	require.NotNil(t, st.Operation)
	assert.Equal(t, "upgrade", st.Operation.Kind, "the last operation: %+v", st.Operation)
	assert.True(t, st.Operation.Done && st.Operation.Error == "", "%+v", st.Operation)
	waitHealthy(t, admin, name, 1, 2)
	code, body = processed()
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, wantMD5, body)
	c.noChanges(main, "after the upgrade")

	// Drift: a resize behind Terraform's back shows in plan, and apply
	// sets the count back.
	_, err = admin.Resize(ctx, name, 2)
	require.NoError(t, err)
	waitHealthy(t, admin, name, 2, 2)
	out, code = c.plan(main)
	require.Equal(t, 2, code, "the resize should show as drift:\n%s", out)
	assert.Contains(t, oneLine(out), "~ instances = 2 -> 1", out)
	c.apply(main)
	rec, err = admin.Info(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, 1, rec.Desired)
	waitHealthy(t, admin, name, 1, 2)
	// So does a version chosen and upgraded to behind its back.
	_, err = admin.Chver(ctx, name, 1)
	require.NoError(t, err)
	_, err = admin.Upgrade(ctx, name)
	require.NoError(t, err)
	waitHealthy(t, admin, name, 1, 1)
	out, code = c.plan(main)
	require.Equal(t, 2, code, "the upgrade should show as drift:\n%s", out)
	assert.Contains(t, oneLine(out), "~ version = 1 -> 2", out)
	c.apply(main)
	st, err = admin.State(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, 2, st.Current)
	assert.Equal(t, 2, st.Deployed)
	waitHealthy(t, admin, name, 1, 2)
	c.noChanges(main, "after undoing the drift")

	// A scale policy instead of the count; both together are refused at
	// plan.
	scale := `  scale {
    min    = 1
    max    = 2
    target = 4
  }`
	rootModule(t, main, deployment("  instances = 1\n"+scale))
	out, code = c.run(main, "plan", "-input=false", "-no-color")
	require.Equal(t, 1, code, out)
	assert.Contains(t, oneLine(out), "Conflicting instances and scale")
	assert.Contains(t, oneLine(out), "Give instances (a fixed count) or a scale block")
	rootModule(t, main, deployment(scale))
	c.apply(main)
	rec, err = admin.Info(ctx, name)
	require.NoError(t, err)
	require.NotNil(t, rec.ScalePolicy)
	assert.Equal(t, api.ScalePolicy{Min: 1, Max: 2, Target: 4, Interval: "2s", UpCooldown: "2s", DownCooldown: "15s", DownWindow: "30s"}, *rec.ScalePolicy)
	c.noChanges(main, "with the scale policy")
	_, err = admin.ScalePolicyOff(ctx, name)
	require.NoError(t, err)
	out, code = c.plan(main)
	require.Equal(t, 2, code, "the policy turned off should show as drift:\n%s", out)
	assert.Contains(t, oneLine(out), "+ scale {", out)
	c.apply(main)
	rec, err = admin.Info(ctx, name)
	require.NoError(t, err)
	require.NotNil(t, rec.ScalePolicy, "apply sets the policy again")
	rootModule(t, main, deployment("  instances = 1"))
	c.apply(main)
	rec, err = admin.Info(ctx, name)
	require.NoError(t, err)
	assert.Nil(t, rec.ScalePolicy, "instances again: the policy goes")
	assert.Equal(t, 1, rec.Desired)

	// The API cannot change a description: the UFOP is replaced, and
	// with it (they refer to its id) its version and deployment.
	desc = "made by Terraform, again"
	rootModule(t, main, deployment("  instances = 1"))
	out, code = c.plan(main)
	require.Equal(t, 2, code, out)
	for _, w := range []string{"Changing description replaces the UFOP", "qufop_ufop.demo must be replaced",
		"qufop_ufop_version.demo must be replaced", "qufop_ufop_deployment.demo must be replaced"} {
		assert.Contains(t, oneLine(out), w, out)
	}
	c.apply(main)
	rec, err = admin.Info(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, desc, rec.Description)
	assert.Equal(t, 1, rec.Current, "a new UFOP's first version")
	waitHealthy(t, admin, name, 1, 1)
	code, body = processed()
	require.Equal(t, http.StatusOK, code, body)
	c.noChanges(main, "after the replacement")

	// Import: a UFOP registered, built, chosen and resized through the
	// API, as the CLI does.
	_, err = admin.Register(ctx, imported, "private", "made by the CLI")
	require.NoError(t, err)
	tarball := filepath.Join(work, "imported.tar")
	writeTar(t, tarball, map[string][]byte{
		"ufop.yaml": mustRead(t, "../examples/ufop-demo/ufop.yaml"),
		"ufop-demo": mustRead(t, demoBin),
	})
	f, err := os.Open(tarball)
	require.NoError(t, err)
	n, err := admin.Upload(ctx, imported, "", f, -1, "")
	f.Close()
	require.NoError(t, err)
	waitUntil(t, 3*time.Minute, "the build of "+imported, func() (bool, string) {
		v, err := admin.Version(ctx, imported, n)
		if err != nil {
			return false, err.Error()
		}
		require.NotEqual(t, api.StateFailed, v.State, v.Error)
		return v.State == api.StateSuccess, v.State
	})
	_, err = admin.Chver(ctx, imported, n)
	require.NoError(t, err)
	_, err = admin.Resize(ctx, imported, 1)
	require.NoError(t, err)
	waitHealthy(t, admin, imported, 1, n)
	imp := filepath.Join(work, "imported")
	importedUFOP := fmt.Sprintf(`
resource "qufop_ufop" "imp" {
  name        = %q
  description = "made by the CLI"
}

resource "qufop_ufop_deployment" "imp" {
  ufop      = qufop_ufop.imp.name
  version   = %d
  instances = 1
}
`, imported, n)
	rootModule(t, imp, importedUFOP)
	c.must(imp, "init", "-input=false", "-no-color")
	c.must(imp, "import", "-input=false", "-no-color", "qufop_ufop.imp", imported)
	c.must(imp, "import", "-input=false", "-no-color", "qufop_ufop_deployment.imp", imported)
	c.noChanges(imp, "after importing the UFOP and its deployment")
	// Its version too: the provider cannot know what it was built from,
	// so the first plan records the source's hash in place, no build.
	rootModule(t, imp, importedUFOP+fmt.Sprintf(`
resource "qufop_ufop_version" "imp" {
  ufop   = qufop_ufop.imp.name
  source = %q
}
`, tarball))
	c.must(imp, "import", "-input=false", "-no-color", "qufop_ufop_version.imp", fmt.Sprintf("%s/%d", imported, n))
	out, code = c.plan(imp)
	require.Equal(t, 2, code, out)
	assert.Contains(t, out, "0 to add, 1 to change, 0 to destroy", out)
	assert.NotContains(t, out, "must be replaced")
	c.apply(imp)
	c.noChanges(imp, "after recording the imported version's hash")
	vs, err := admin.Versions(ctx, imported)
	require.NoError(t, err)
	assert.Len(t, vs, 1, "no build for the import")

	// A failing build: apply fails with the build log's failing line.
	bad := filepath.Join(work, "bad")
	badTar := filepath.Join(work, "bad.tar")
	writeTar(t, badTar, map[string][]byte{"ufop.yaml": []byte(`image: local/busybox:1
build_script:
  - echo preparing the build
  - echo "frobnicate is not installed here" >&2; exit 3
run: ./app
protocol: handler
`)})
	rootModule(t, bad, fmt.Sprintf(`
resource "qufop_ufop" "bad" {
  name = %q
}

resource "qufop_ufop_version" "bad" {
  ufop   = qufop_ufop.bad.name
  source = %q
}
`, broken, badTar))
	c.must(bad, "init", "-input=false", "-no-color")
	out, code = c.run(bad, "apply", "-input=false", "-no-color", "-auto-approve")
	require.Equal(t, 1, code, "a failed build fails the apply:\n%s", out)
	line := oneLine(out)
	assert.Contains(t, line, "Build of "+broken+" version 1 failed", out)
	assert.Contains(t, line, `build_script line 2 ("echo \"frobnicate is not installed here\" >&2; exit 3") failed: exit code 3`, out)
	assert.Contains(t, line, "frobnicate is not installed here", out)
	v, err := admin.Version(ctx, broken, 1)
	require.NoError(t, err)
	assert.Equal(t, api.StateFailed, v.State)

	// Destroy: every UFOP is gone.
	for _, dir := range []string{bad, imp, main} {
		c.must(dir, "destroy", "-input=false", "-no-color", "-auto-approve")
	}
	for _, n := range []string{name, imported, broken} {
		_, err := admin.Info(ctx, n)
		assert.True(t, client.IsStatus(err, http.StatusNotFound), "%s after destroy: %v", n, err)
	}
	code, body = processed()
	assert.NotEqual(t, http.StatusOK, code, "the UFOP is gone: %s", body)
}
