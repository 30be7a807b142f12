package e2e

import (
	"context"
	"crypto/md5"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	qclient "github.com/qufop/qufop/client"
	"github.com/qufop/qufop/internal/dockertest"
)

// Where TestTerraformPlatform finds its Terraform CLI and the Nomad
// provider. Neither can come from a network here: the CLI is a path and the
// provider a filesystem mirror (`terraform providers mirror` layout, packed
// or unpacked) holding hashicorp/nomad 2.x.
const (
	envTerraform = "QUFOP_TERRAFORM" // terraform (1.5.x) or tofu binary
	envTFMirror  = "QUFOP_TF_MIRROR"
)

// terraformCLI returns the Terraform CLI to use and its version line: the
// first of $QUFOP_TERRAFORM, $TF_ACC_TERRAFORM_PATH (terraform-plugin-testing's
// variable), `terraform` on PATH, `tofu` on PATH or in $(go env GOPATH)/bin.
func terraformCLI() (string, string, error) {
	var tried []string
	for _, env := range []string{envTerraform, "TF_ACC_TERRAFORM_PATH"} {
		if p := os.Getenv(env); p != "" {
			if _, err := os.Stat(p); err != nil {
				return "", "", fmt.Errorf("%s=%s: %v", env, p, err)
			}
			return p, cliVersion(p), nil
		}
		tried = append(tried, "$"+env)
	}
	for _, name := range []string{"terraform", "tofu"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, cliVersion(p), nil
		}
		tried = append(tried, name+" on PATH")
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "tofu")
		if _, err := os.Stat(p); err == nil {
			return p, cliVersion(p), nil
		}
	}
	tried = append(tried, "tofu in $(go env GOPATH)/bin")
	return "", "", errors.New("no Terraform CLI (tried " + strings.Join(tried, ", ") + "): set " + envTerraform + " to terraform 1.5.x or tofu 1.6")
}

func cliVersion(bin string) string {
	cmd := exec.Command(bin, "version")
	cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE=/dev/null", "CHECKPOINT_DISABLE=1")
	out, _ := cmd.Output()
	line, _, _ := strings.Cut(string(out), "\n")
	return line
}

// nomadProviderIn returns the folder of hashicorp/nomad in mirror (under
// whichever registry host it is).
func nomadProviderIn(mirror string) (string, error) {
	if mirror == "" {
		return "", errors.New("no provider mirror: set " + envTFMirror + " to a filesystem mirror holding hashicorp/nomad 2.x (`terraform providers mirror` layout)")
	}
	found, _ := filepath.Glob(filepath.Join(mirror, "*", "hashicorp", "nomad"))
	if len(found) == 0 {
		return "", fmt.Errorf("%s=%s holds no <host>/hashicorp/nomad", envTFMirror, mirror)
	}
	return found[0], nil
}

// offlineCLIConfig writes a CLI configuration whose only provider source is
// a mirror in dir holding the provider folder nomad (symlinked file by
// file) and the terraform-provider-qufop binary qufop (as qufop/qufop
// tfProviderVersion), each under both registry.terraform.io, terraform's
// default host, and registry.opentofu.org, tofu's: hashicorp/nomad and
// qufop/qufop mean the one or the other. One configuration serves the
// platform root and the UFOP root.
func offlineCLIConfig(t *testing.T, dir, nomad, qufop string) string {
	mirror := filepath.Join(dir, "mirror")
	qufopBin, err := filepath.Abs(qufop)
	require.NoError(t, err)
	for _, host := range []string{"registry.terraform.io", "registry.opentofu.org"} {
		dst := filepath.Join(mirror, host, "hashicorp", "nomad")
		require.NoError(t, filepath.WalkDir(nomad, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(nomad, p)
			if d.IsDir() {
				return os.MkdirAll(filepath.Join(dst, rel), 0o755)
			}
			abs, err := filepath.EvalSymlinks(p)
			if err != nil {
				return err
			}
			return os.Symlink(abs, filepath.Join(dst, rel))
		}))
		qdir := filepath.Join(mirror, host, "qufop", "qufop", tfProviderVersion, runtime.GOOS+"_"+runtime.GOARCH)
		require.NoError(t, os.MkdirAll(qdir, 0o755))
		require.NoError(t, os.Symlink(qufopBin, filepath.Join(qdir, "terraform-provider-qufop_v"+tfProviderVersion)))
	}
	config := filepath.Join(dir, "terraformrc")
	require.NoError(t, os.WriteFile(config, []byte(fmt.Sprintf(`provider_installation {
  filesystem_mirror {
    path = %q
  }
}
`, mirror)), 0o644))
	return config
}

// tfRoot is a root module in a folder of its own, run with the CLI bin.
type tfRoot struct {
	t   *testing.T
	bin string
	dir string
	env []string
}

func (r *tfRoot) write(main string) {
	require.NoError(r.t, os.WriteFile(filepath.Join(r.dir, "main.tf"), []byte(main), 0o644))
}

// run runs the CLI in the root and returns its stdout and stderr.
func (r *tfRoot) run(args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.bin, args...)
	cmd.Dir, cmd.Env = r.dir, r.env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func (r *tfRoot) must(args ...string) string {
	r.t.Helper()
	start := time.Now()
	out, errOut, err := r.run(args...)
	require.NoError(r.t, err, "%s %s:\n%s%s", filepath.Base(r.bin), strings.Join(args, " "), tail(out, 60), errOut)
	r.t.Logf("%s %s: %s", filepath.Base(r.bin), args[0], time.Since(start).Round(100*time.Millisecond))
	return out
}

// platformOutputs is the root's output "platform": the module's outputs.
type platformOutputs struct {
	GatewayURL        string   `json:"gateway_url"`
	GatewayURLs       []string `json:"gateway_urls"`
	ManagementURL     string   `json:"management_url"`
	RegistryAddress   string   `json:"registry_address"`
	AdminKeysVariable string   `json:"admin_keys_variable"`
	Jobs              map[string]struct {
		ID               string   `json:"id"`
		Namespace        string   `json:"namespace"`
		DeploymentStatus *string  `json:"deployment_status"`
		Nodes            []string `json:"nodes"`
	} `json:"jobs"`
}

// TestTerraformPlatform applies terraform/modules/qufop-platform from a
// root module in a temporary folder (the module by a relative path, so that
// its default jobspecs_dir is the repository's jobspecs/) to a Nomad and a
// Consul dev agent on loopback, with the provider installed offline from a
// mirror (`make test-terraform`; skipped, saying what is missing, without
// nomad, consul, a Terraform CLI or the mirror). It checks the variables'
// validation messages, that apply brings up the four jobs with healthy
// deployments and outputs the addresses they answer on, that a second plan
// has nothing to do, that the gateway serves a file and an imageView2
// thumbnail and the management API a request signed with the admin keys of
// the Nomad Variable, that the secret key is in neither the jobs nor their
// logs nor the outputs, that an update (rotated keys, a scaler variable)
// returns once the scalers' deployment is healthy and the builder then
// takes the new keys, that a UFOP deployed with terraform/provider from a
// second root module (qufop_ufop, qufop_ufop_version,
// qufop_ufop_deployment, the qufop_ufop data source; qufop/qufop installed
// from the same offline mirror) against the management_url output answers
// a processing URL through the gateway job, as does one deployed with the
// qufop CLI, that destroy of the UFOP root unregisters its UFOP and purges
// its job, and that destroy of the platform root then removes every job
// and the variable and leaves the CLI's UFOP's job alone (the module does
// not own ufop-* jobs).
func TestTerraformPlatform(t *testing.T) {
	var missing []string
	for _, b := range []string{"nomad (v1.6.5)", "consul (v1.16.3)"} {
		name, version, _ := strings.Cut(b, " ")
		if _, err := exec.LookPath(name); err != nil {
			missing = append(missing, "`"+name+"` "+version+" on PATH")
		}
	}
	tf, tfVersion, err := terraformCLI()
	if err != nil {
		missing = append(missing, err.Error())
	}
	provider, err := nomadProviderIn(os.Getenv(envTFMirror))
	if err != nil {
		missing = append(missing, err.Error())
	}
	if len(missing) > 0 {
		t.Skip("skipping: needs " + strings.Join(missing, "; "))
	}
	t.Logf("%s (%s); hashicorp/nomad from %s", tfVersion, tf, provider)

	c := dockertest.Client(t)
	dockertest.Busybox(t, c) // the UFOP's base image (local/busybox:1)
	if _, err := os.Stat("/usr/bin/docker-registry"); err != nil {
		if _, ierr := c.ImageInspect(context.Background(), registryImage); ierr != nil {
			t.Skipf("skipping: no %s and no /usr/bin/docker-registry to make it from (apt-get install docker-registry)", registryImage)
		}
	}
	work := t.TempDir()
	providerBin := qufopProvider(t, work) // terraform/provider, for the UFOP root
	bin := filepath.Join(work, "qufop")
	goBuild(t, bin, "./cmd/qufop", true)
	demoBin := filepath.Join(work, "ufop-demo")
	goBuild(t, demoBin, "./examples/ufop-demo", false)
	// Images first: their removal is registered before the agents', so it
	// runs after the containers are gone.
	suffix := time.Now().UnixNano() % 1e6
	qufopImage := fmt.Sprintf("qufop/qufop:e2e-tf-%d", suffix)
	makeImage(t, c, qufopImage, nil, "BIN="+bin)
	regImage := registryImage
	if _, err := c.ImageInspect(context.Background(), regImage); err != nil {
		makeImage(t, c, regImage, []string{"registry"})
	}
	ufopName := fmt.Sprintf("tf-e2e-%d", suffix)  // deployed with the qufop CLI
	tfUFOP := fmt.Sprintf("tf-e2e-tf-%d", suffix) // deployed with terraform/provider
	removeUFOPImagesAtEnd(t, c, ufopName)
	removeUFOPImagesAtEnd(t, c, tfUFOP)

	module, err := filepath.Abs("../terraform/modules/qufop-platform")
	require.NoError(t, err)
	config := offlineCLIConfig(t, filepath.Join(work, "tf"), provider, providerBin)
	root := func(name string) *tfRoot {
		dir := filepath.Join(work, name)
		require.NoError(t, os.Mkdir(dir, 0o755))
		env := append(os.Environ(), "TF_CLI_CONFIG_FILE="+config, "CHECKPOINT_DISABLE=1", "TF_IN_AUTOMATION=1")
		env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "TF_VAR_") || strings.HasPrefix(kv, "TF_DATA_DIR=") })
		return &tfRoot{t: t, bin: tf, dir: dir, env: env}
	}
	// The module by a path relative to the root: Terraform uses such a
	// module in place (an absolute path is copied without jobspecs/).
	source, err := filepath.Rel(filepath.Join(work, "root"), module)
	require.NoError(t, err)

	checkPlatformValidation(t, root("bad"), source)

	e := startNomadEnv(t)
	demo := filepath.Join(e.buckets, "demo")
	require.NoError(t, os.Mkdir(demo, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(demo, "hello.txt"), []byte(helloText), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(demo, "storm.jpg"), mustRead(t, "../testdata/images/storm-1920x1080.jpg"), 0o644))
	for _, p := range []string{demo, filepath.Join(demo, "hello.txt"), filepath.Join(demo, "storm.jpg")} {
		require.NoError(t, os.Chown(p, 10001, 10001)) // the gateway's user
	}

	regPort, builderPort, gatewayPort := freeTCPPort(t), freeTCPPort(t), freeTCPPort(t)
	accessKey := fmt.Sprintf("AKtf%d", suffix)
	secretKey := fmt.Sprintf("SKtfSecret%dx%d", suffix, time.Now().UnixNano())
	r := root("root")
	rootMain := func(lockTTL string) string {
		return fmt.Sprintf(`
terraform {
  required_providers {
    nomad = {
      source = "hashicorp/nomad"
    }
  }
}

provider "nomad" {
  address = %q
}

variable "admin_keys" {
  type = object({
    access_key = string
    secret_key = string
  })
  sensitive = true
}

module "platform" {
  source = %q

  image          = %q
  registry_image = %q
  ports = {
    registry = %d
    builder  = %d
    gateway  = %d
  }
  buckets              = ["demo"]
  admin_keys           = var.admin_keys
  default_node_address = "127.0.0.1"
  deploy_timeout       = "8m"
  job_vars = {
    gateway = { workers = "2" }
    scaler  = { lock_ttl = %q }
  }
}

output "platform" {
  value = module.platform
}
`, nomadAddr, source, qufopImage, regImage, regPort, builderPort, gatewayPort, lockTTL)
	}
	r.write(rootMain("6s"))
	env := r.env
	setKeys := func(secret string) {
		keysJSON, _ := json.Marshal(map[string]string{"access_key": accessKey, "secret_key": secret})
		r.env = append(slices.Clip(env), "TF_VAR_admin_keys="+string(keysJSON)) // as a user would: not in the code
	}
	setKeys(secretKey)

	r.must("init", "-input=false", "-no-color")
	start := time.Now()
	applied := r.must("apply", "-input=false", "-no-color", "-auto-approve")
	t.Logf("apply to four healthy jobs: %s", time.Since(start).Round(100*time.Millisecond))
	require.NotContains(t, applied, secretKey, "apply printed the secret key")

	raw := r.must("output", "-json", "platform")
	require.NotContains(t, raw, secretKey, "the outputs hold the secret key")
	var out platformOutputs
	require.NoError(t, json.Unmarshal([]byte(raw), &out), raw)
	gw := "http://127.0.0.1:" + strconv.Itoa(gatewayPort)
	mgmt := "http://127.0.0.1:" + strconv.Itoa(builderPort)
	require.Equal(t, gw, out.GatewayURL, raw)
	require.Equal(t, []string{gw}, out.GatewayURLs, raw)
	require.Equal(t, mgmt, out.ManagementURL, raw)
	require.Equal(t, "127.0.0.1:"+strconv.Itoa(regPort), out.RegistryAddress, raw)
	require.Equal(t, "nomad/jobs/qufop-builder", out.AdminKeysVariable, raw)
	require.Len(t, out.Jobs, 4, raw)
	for _, j := range []string{"registry", "builder", "scaler"} {
		require.NotNil(t, out.Jobs[j].DeploymentStatus, "%s: %s", j, raw)
		require.Equal(t, "successful", *out.Jobs[j].DeploymentStatus, "%s: apply returned before its deployment was healthy", j)
		require.Equal(t, "qufop-"+j, out.Jobs[j].ID)
	}
	require.Nil(t, out.Jobs["gateway"].DeploymentStatus, "a system job has no deployment")
	require.Len(t, out.Jobs["gateway"].Nodes, 1, raw)

	// Apply waited for the services' deployments; the gateway, a system
	// job, may still be starting.
	for _, j := range []string{"registry", "builder", "gateway", "scaler"} {
		e.waitPassing(t, "qufop-"+j, "qufop-"+j, 4*time.Minute)
	}

	// Applied again, the module has nothing to do: no diff the jobspecs'
	// parse or the data sources would make up on every run.
	plan, planErr, err := r.run("plan", "-input=false", "-no-color", "-detailed-exitcode")
	require.NoError(t, err, "plan after apply wants changes (exit 2) or failed:\n%s%s", plan, planErr)

	// The gateway job serves the bucket of the host volume; job_vars
	// reached it (--workers 2).
	code, _, body := httpGet(t, gw+"/health")
	require.Equal(t, 200, code, body)
	code, _, body = httpGet(t, gw+"/demo/hello.txt")
	require.Equal(t, 200, code, body)
	require.Equal(t, helloText, body)
	code, ctype, body := httpGet(t, gw+"/demo/storm.jpg?imageView2/2/w/100/format/webp")
	require.Equal(t, 200, code, body)
	require.Equal(t, "image/webp", ctype)
	require.Contains(t, jobArgs(t, "qufop-gateway"), `"--workers","2"`)

	// The management API answers a request signed with the keys of the
	// Nomad Variable (the builder generates other keys without it), and
	// refuses another secret.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	who, err := qclient.New(out.ManagementURL, auth.Credentials{AccessKey: accessKey, SecretKey: secretKey}).WhoAmI(ctx)
	require.NoError(t, err, "a signed request to %s", out.ManagementURL)
	require.Equal(t, adminUser, who)
	_, err = qclient.New(out.ManagementURL, auth.Credentials{AccessKey: accessKey, SecretKey: secretKey + "x"}).WhoAmI(ctx)
	require.True(t, qclient.IsStatus(err, http.StatusUnauthorized), "a wrong secret: %v", err)

	// The secret is in the Nomad Variable and nowhere else Nomad shows.
	var v struct{ Items map[string]string }
	getJSON(t, nomadAddr+"/v1/var/nomad/jobs/qufop-builder", &v)
	require.Equal(t, secretKey, v.Items["secret_key"])
	require.Equal(t, accessKey, v.Items["access_key"])
	checkNoSecretInJobs(t, secretKey)

	// An update: new admin keys, and a scaler variable that replaces the
	// scalers one at a time. Apply returns once that deployment is
	// healthy; the builder's template sees the new variable and restarts
	// the builder with the new keys.
	oldSecret := secretKey
	secretKey = fmt.Sprintf("SKtfRotated%dx%d", suffix, time.Now().UnixNano())
	setKeys(secretKey)
	r.write(rootMain("8s"))
	start = time.Now()
	applied = r.must("apply", "-input=false", "-no-color", "-auto-approve")
	updated := time.Now()
	t.Logf("apply of the update: %s", updated.Sub(start).Round(100*time.Millisecond))
	require.NotContains(t, applied, secretKey, "apply printed the secret key")
	var dep struct {
		Status     string
		JobVersion int
	}
	getJSON(t, nomadAddr+"/v1/job/qufop-scaler/deployment", &dep)
	require.Equal(t, "successful", dep.Status, "apply returned before the scalers' update was healthy")
	require.Equal(t, 1, dep.JobVersion)
	require.Contains(t, jobArgs(t, "qufop-scaler"), `"--lock-ttl","8s"`)
	waitUntil(t, 3*time.Minute, "the builder with the new keys", func() (bool, string) {
		_, err := qclient.New(out.ManagementURL, auth.Credentials{AccessKey: accessKey, SecretKey: secretKey}).WhoAmI(ctx)
		return err == nil, fmt.Sprint(err)
	})
	t.Logf("the builder answers with the new keys %s after apply returned", time.Since(updated).Round(100*time.Millisecond))
	_, err = qclient.New(out.ManagementURL, auth.Credentials{AccessKey: accessKey, SecretKey: oldSecret}).WhoAmI(ctx)
	require.True(t, qclient.IsStatus(err, http.StatusUnauthorized), "the old secret after the rotation: %v", err)
	e.waitPassing(t, "qufop-scaler", "qufop-scaler", 4*time.Minute)
	checkNoSecretInJobs(t, secretKey)
	checkNoSecretInJobs(t, oldSecret)

	// A UFOP deployed through terraform/provider answers a processing URL:
	// the builder built it on the node's Docker, pushed it to the registry
	// job, Nomad runs it as ufop-<name>, Consul has it passing, and the
	// gateway job found it there.
	u := deployUFOPRoot(t, e, root("ufops"), r, out, accessKey, secretKey, tfUFOP, demoSource(t, demoBin, "handler", ""))

	// The same through the qufop CLI. Besides the CLI's own path on the
	// builder job, this UFOP is the ufop-* job that the platform's destroy
	// must leave alone (the module does not own ufop-* jobs): the
	// provider's UFOP cannot be, as its destroy goes through the builder's
	// management API and so has to come before the platform's.
	cli := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "QUFOP_ADDR="+out.ManagementURL, "QUFOP_ACCESS_KEY="+accessKey,
			"QUFOP_SECRET_KEY="+secretKey, "QUFOP_CONFIG="+filepath.Join(work, "cli.json"))
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, "qufop %s: %s", strings.Join(args, " "), b)
		return string(b)
	}
	start = time.Now()
	cli("reg", ufopName)
	cli("build", ufopName, "-f", demoSource(t, demoBin, "handler", ""))
	cli("chver", ufopName, "-c", "1")
	cli("resize", ufopName, "-n", "1", "--timeout", "5m")
	waitUntil(t, 2*time.Minute, "the UFOP through the gateway", func() (bool, string) {
		code, _, body := httpGet(t, gw+"/demo/hello.txt?"+ufopName+"/md5")
		return code == 200 && strings.TrimSpace(body) == helloMD5, fmt.Sprintf("%d %s", code, body)
	})
	t.Logf("UFOP %s: reg, build, chver, resize to answering through the gateway: %s", ufopName, time.Since(start).Round(100*time.Millisecond))
	// Build logs and the builder's own: the secret is still in none.
	checkNoSecretInJobs(t, secretKey)
	ufopJob, _, err := e.nomad.Jobs().Info("ufop-"+ufopName, nil)
	require.NoError(t, err)

	// Destroy of the UFOP root: the UFOP is unregistered, its job purged,
	// its service out of Consul; the CLI's UFOP is untouched.
	u.destroy()
	e.waitPassing(t, "ufop-"+ufopName, "ufop-"+ufopName, time.Minute)
	code, _, body = httpGet(t, gw+"/demo/hello.txt?"+ufopName+"/md5")
	require.Equal(t, 200, code, body)
	after, _, err := e.nomad.Jobs().Info("ufop-"+ufopName, nil)
	require.NoError(t, err)
	require.Equal(t, *ufopJob.JobModifyIndex, *after.JobModifyIndex, "destroy of %s changed ufop-%s", tfUFOP, ufopName)

	start = time.Now()
	r.must("destroy", "-input=false", "-no-color", "-auto-approve")
	t.Logf("destroy: %s", time.Since(start).Round(100*time.Millisecond))
	for _, j := range []string{"registry", "builder", "gateway", "scaler"} {
		e.waitGone(t, "qufop-"+j, "qufop-"+j, 3*time.Minute)
	}
	var vars []struct{ Path string }
	getJSON(t, nomadAddr+"/v1/vars?namespace=*", &vars)
	require.Empty(t, vars, "Nomad Variables left after destroy")
	state, _, err := r.run("state", "list")
	require.NoError(t, err)
	require.Empty(t, strings.TrimSpace(state), "state after destroy")
	// The UFOP's job is the builder's and the scaler's, not the module's.
	after, _, err = e.nomad.Jobs().Info("ufop-"+ufopName, nil)
	require.NoError(t, err, "destroy removed ufop-%s", ufopName)
	require.Equal(t, *ufopJob.JobModifyIndex, *after.JobModifyIndex, "destroy changed ufop-%s", ufopName)
	// The nomadEnv's clean-up purges it and stops the agents.
}

// helloText is demo/hello.txt in the platform's bucket; helloMD5 what the
// demo UFOP's md5 command answers for it.
const helloText = "hello from terraform"

var helloMD5 = fmt.Sprintf(`{"hash":"%x"}`, md5.Sum([]byte(helloText)))

// ufopRoot is the root module deployUFOPRoot applied.
type ufopRoot struct {
	t       *testing.T
	e       *nomadEnv
	r       *tfRoot
	admin   *qclient.Client
	name    string
	procURL string
}

// deployUFOPRoot applies in r a root module that deploys the UFOP name
// from the folder src with terraform/provider (qufop_ufop,
// qufop_ufop_version, qufop_ufop_deployment of one instance, and the
// qufop_ufop data source) to the platform that the root platform applied:
// the provider's address is the management_url output read from that
// root's state, as stage 2 of terraform/README.md reads stage 1's, and the
// admin keys come from QUFOP_ACCESS_KEY and QUFOP_SECRET_KEY, as the
// provider documents, so that they are in neither the code nor the state.
// It checks that the builder pushed the image to the registry job, that
// Nomad runs ufop-<name> with its service passing in Consul, that the
// processing URL the root outputs answers from that UFOP through the
// gateway job, and that a second plan is empty.
func deployUFOPRoot(t *testing.T, e *nomadEnv, r, platform *tfRoot, out platformOutputs, accessKey, secretKey, name, src string) *ufopRoot {
	t.Helper()
	r.env = slices.DeleteFunc(slices.Clone(r.env), func(kv string) bool { return strings.HasPrefix(kv, "QUFOP_") })
	r.env = append(r.env, "QUFOP_ACCESS_KEY="+accessKey, "QUFOP_SECRET_KEY="+secretKey,
		"QUFOP_CONFIG="+filepath.Join(r.dir, "no-login.json")) // no saved login of the machine's user
	r.write(fmt.Sprintf(`
terraform {
  required_providers {
    qufop = {
      source = "qufop/qufop"
    }
  }
}

data "terraform_remote_state" "platform" {
  backend = "local"
  config = {
    path = %q
  }
}

locals {
  platform = data.terraform_remote_state.platform.outputs.platform
}

provider "qufop" {
  address = local.platform.management_url
}

resource "qufop_ufop" "demo" {
  name        = %q
  description = "deployed by TestTerraformPlatform"
}

resource "qufop_ufop_version" "demo" {
  ufop   = qufop_ufop.demo.id
  source = %q
}

resource "qufop_ufop_deployment" "demo" {
  ufop      = qufop_ufop.demo.id
  version   = qufop_ufop_version.demo.version
  instances = 1
}

data "qufop_ufop" "demo" {
  name = qufop_ufop_deployment.demo.ufop
}

output "image" {
  value = qufop_ufop_version.demo.image
}

output "deployed_version" {
  value = qufop_ufop_deployment.demo.deployed_version
}

output "healthy_instances" {
  value = length([for i in data.qufop_ufop.demo.instances : i if i.healthy && i.version == qufop_ufop_deployment.demo.deployed_version])
}

output "processing_url" {
  value = "${local.platform.gateway_url}/demo/hello.txt?${qufop_ufop.demo.name}/md5"
}
`, filepath.Join(platform.dir, "terraform.tfstate"), name, src))
	r.must("init", "-input=false", "-no-color")
	start := time.Now()
	applied := r.must("apply", "-input=false", "-no-color", "-auto-approve")
	t.Logf("UFOP %s: apply of the UFOP root (reg, build, chver, resize to 1 healthy instance): %s", name, time.Since(start).Round(100*time.Millisecond))
	require.NotContains(t, applied, secretKey, "apply printed the secret key")
	state, err := os.ReadFile(filepath.Join(r.dir, "terraform.tfstate"))
	require.NoError(t, err)
	require.NotContains(t, string(state), secretKey, "the UFOP root's state holds the secret key")

	var outs struct {
		Image            struct{ Value string } `json:"image"`
		DeployedVersion  struct{ Value int }    `json:"deployed_version"`
		HealthyInstances struct{ Value int }    `json:"healthy_instances"`
		ProcessingURL    struct{ Value string } `json:"processing_url"`
	}
	raw := r.must("output", "-json")
	require.NoError(t, json.Unmarshal([]byte(raw), &outs), raw)
	require.Equal(t, 1, outs.DeployedVersion.Value, raw)
	require.Equal(t, 1, outs.HealthyInstances.Value, "the data source's healthy instances: %s", raw)
	procURL := out.GatewayURL + "/demo/hello.txt?" + name + "/md5"
	require.Equal(t, procURL, outs.ProcessingURL.Value, raw)

	// The builder pushed the image to the registry job.
	repo, ok := strings.CutPrefix(outs.Image.Value, out.RegistryAddress+"/")
	require.True(t, ok, "image %s is not in the registry job at %s", outs.Image.Value, out.RegistryAddress)
	repo, ok = strings.CutSuffix(repo, ":v1")
	require.True(t, ok && strings.HasSuffix(repo, "/"+name), "image %s is not version 1 of %s", outs.Image.Value, name)
	var tags struct{ Tags []string }
	getJSON(t, "http://"+out.RegistryAddress+"/v2/"+repo+"/tags/list", &tags)
	require.Contains(t, tags.Tags, "v1", "the registry job's tags of %s", repo)

	// Nomad runs it, Consul has it passing, the gateway job serves it.
	e.waitPassing(t, "ufop-"+name, "ufop-"+name, 3*time.Minute)
	waitUntil(t, 2*time.Minute, "the processing URL of "+name, func() (bool, string) {
		code, _, body := httpGet(t, procURL)
		return code == 200 && strings.TrimSpace(body) == helloMD5, fmt.Sprintf("%d %s", code, body)
	})
	admin := qclient.New(out.ManagementURL, auth.Credentials{AccessKey: accessKey, SecretKey: secretKey})
	rec, err := admin.Info(context.Background(), name)
	require.NoError(t, err)
	require.Equal(t, 1, rec.Current)
	require.Equal(t, 1, rec.Desired)
	t.Logf("UFOP %s: apply to %s answering: %s", name, procURL, time.Since(start).Round(100*time.Millisecond))

	plan, planErr, err := r.run("plan", "-input=false", "-no-color", "-detailed-exitcode")
	require.NoError(t, err, "plan of the UFOP root after apply wants changes (exit 2) or failed:\n%s%s", plan, planErr)
	return &ufopRoot{t: t, e: e, r: r, admin: admin, name: name, procURL: procURL}
}

// destroy destroys the UFOP root and checks that the UFOP is unregistered,
// its Nomad job purged and its service out of Consul.
func (u *ufopRoot) destroy() {
	t := u.t
	t.Helper()
	start := time.Now()
	u.r.must("destroy", "-input=false", "-no-color", "-auto-approve")
	t.Logf("UFOP %s: destroy of the UFOP root: %s", u.name, time.Since(start).Round(100*time.Millisecond))
	_, err := u.admin.Info(context.Background(), u.name)
	require.True(t, qclient.IsStatus(err, http.StatusNotFound), "Info of %s after destroy: %v", u.name, err)
	u.e.waitGone(t, "ufop-"+u.name, "ufop-"+u.name, 3*time.Minute)
	state, _, err := u.r.run("state", "list")
	require.NoError(t, err)
	require.Empty(t, strings.TrimSpace(state), "the UFOP root's state after destroy")
	// The gateway follows Consul's catalog: give it time to see the
	// service go.
	waitUntil(t, time.Minute, u.procURL+" to stop answering", func() (bool, string) {
		code, _, body := httpGet(t, u.procURL)
		return code != 200, fmt.Sprintf("%d %s", code, body)
	})
}

// checkPlatformValidation plans the module with bad variables in root r
// and checks each is refused with its message, before anything runs (no
// Nomad agent is needed: validation comes first).
func checkPlatformValidation(t *testing.T, r *tfRoot, source string) {
	cases := []struct{ args, want string }{
		{`ports = { registry = 5000, builder = 5000 }`, "ports.registry, ports.builder and ports.gateway must differ"},
		{`jobs = ["registry", "ufop-demo"]`, `jobs may hold only "registry", "builder", "gateway" and "scaler"`},
		{`image = "qufop/qufop:latest"`, "image must be a Docker image reference with an explicit tag other than latest"},
		{`admin_keys = { access_key = "AKvalid", secret_key = "short" }`, "admin_keys.secret_key must be 16 to 256 characters"},
		{`job_vars = { scaler = { consul_token = "x" } }`, "job_vars must not carry keys or tokens"},
		{`job_vars = { gateway = { port = "80" } }`, "job_vars must not set datacenters, image"},
		{`jobspecs_dir = "/nonexistent"`, "jobspecs_dir must be a folder holding registry.nomad.hcl"},
		{`registry_address = "http://10.0.0.5:5000"`, "registry_address must be host:port without a scheme"},
	}
	main := func(args string) string {
		return fmt.Sprintf(`
provider "nomad" {
  address = "http://127.0.0.1:1"
}

module "platform" {
  source = %q
  %s
}
`, source, args)
	}
	r.write(main(""))
	r.must("init", "-input=false", "-no-color")
	for _, c := range cases {
		r.write(main(c.args))
		out, errOut, err := r.run("plan", "-input=false", "-no-color")
		require.Error(t, err, "plan with %s succeeded:\n%s", c.args, out)
		// The CLI wraps long messages: compare without line breaks.
		flat := strings.Join(strings.Fields(errOut), " ")
		require.Contains(t, flat, c.want, "plan with %s", c.args)
	}
}

// jobArgs is the JSON of the args of the first task of job.
func jobArgs(t *testing.T, job string) string {
	var j struct {
		TaskGroups []struct {
			Tasks []struct{ Config map[string]any }
		}
	}
	getJSON(t, nomadAddr+"/v1/job/"+job, &j)
	require.NotEmpty(t, j.TaskGroups)
	require.NotEmpty(t, j.TaskGroups[0].Tasks)
	b, err := json.Marshal(j.TaskGroups[0].Tasks[0].Config["args"])
	require.NoError(t, err)
	return string(b)
}

// checkNoSecretInJobs reads every job Nomad has (its JSON, versions and
// stored submission) and the stdout and stderr of every task of every
// allocation, failing t where secret appears.
func checkNoSecretInJobs(t *testing.T, secret string) {
	t.Helper()
	get := func(path string) string {
		r, err := http.Get(nomadAddr + path)
		require.NoError(t, err)
		defer r.Body.Close()
		b, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		if r.StatusCode == http.StatusNotFound {
			return ""
		}
		require.Equal(t, 200, r.StatusCode, "GET %s: %s", path, b)
		return string(b)
	}
	var jobs []struct{ ID string }
	getJSON(t, nomadAddr+"/v1/jobs", &jobs)
	require.NotEmpty(t, jobs)
	read := 0
	for _, j := range jobs {
		id := url.PathEscape(j.ID)
		for _, p := range []string{"/v1/job/" + id, "/v1/job/" + id + "/versions", "/v1/job/" + id + "/submission?version=0"} {
			require.NotContains(t, get(p), secret, "GET %s shows the secret key", p)
		}
		var allocs []struct {
			ID         string
			TaskStates map[string]any
		}
		getJSON(t, nomadAddr+"/v1/job/"+id+"/allocations", &allocs)
		for _, a := range allocs {
			for task := range a.TaskStates {
				for _, typ := range []string{"stdout", "stderr"} {
					p := fmt.Sprintf("/v1/client/fs/logs/%s?task=%s&type=%s&origin=start&offset=0&plain=true", a.ID, url.QueryEscape(task), typ)
					require.NotContains(t, get(p), secret, "the %s of %s/%s shows the secret key", typ, j.ID, task)
					read++
				}
			}
		}
	}
	require.NotZero(t, read, "no task log was read")
}

// removeUFOPImagesAtEnd removes, at the end of t, the images a builder
// made for the UFOP name (label qufop.ufop). The repository it pushed them
// to is in the registry job's host volume, a temporary folder.
func removeUFOPImagesAtEnd(t *testing.T, c *client.Client, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		imgs, err := c.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "qufop.ufop="+name))})
		if err != nil {
			t.Errorf("listing the images of %s: %v", name, err)
		}
		for _, img := range imgs {
			if _, err := c.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !client.IsErrNotFound(err) {
				t.Errorf("removing image %v of %s: %v", img.RepoTags, name, err)
			}
		}
	})
}
