package provider

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/control/api"
)

// The schemas pass the framework's own checks (it refuses, e.g., a
// default on an attribute that is not computed) and name what the README
// documents.
func TestSchemas(t *testing.T) {
	srv := providerserver.NewProtocol6(New("test")())()
	resp, err := srv.GetProviderSchema(context.Background(), &tfprotov6.GetProviderSchemaRequest{})
	require.NoError(t, err)
	for _, d := range resp.Diagnostics {
		t.Errorf("schema: %s: %s", d.Summary, d.Detail)
	}
	var got []string
	for n := range resp.ResourceSchemas {
		got = append(got, n)
	}
	assert.ElementsMatch(t, []string{"qufop_ufop", "qufop_ufop_version", "qufop_ufop_deployment"}, got)
	assert.Contains(t, resp.DataSourceSchemas, "qufop_ufop")
	sk := resp.Provider.Block.Attributes
	for _, a := range sk {
		if a.Name == "secret_key" {
			assert.True(t, a.Sensitive, "secret_key is sensitive")
		}
	}
}

func clearEnv(t *testing.T) {
	for _, e := range []string{EnvAddr, EnvAccessKey, EnvSecretKey} {
		t.Setenv(e, "")
	}
	t.Setenv(EnvConfig, filepath.Join(t.TempDir(), "none.json"))
}

// The keys come from the configuration, else the environment, else the
// saved login, as for the CLI.
func TestResolveClient(t *testing.T) {
	clearEnv(t)
	_, err := resolveClient("", "", "")
	require.EqualError(t, err, "no keys: set access_key and secret_key in the provider block, or QUFOP_ACCESS_KEY and QUFOP_SECRET_KEY, or run qufop login")

	login := filepath.Join(t.TempDir(), "config.json")
	require.NoError(t, os.WriteFile(login, []byte(`{"addr":"http://10.0.0.1:9","access_key":"AKL","secret_key":"SKL"}`), 0o600))
	t.Setenv(EnvConfig, login)
	c, err := resolveClient("", "", "")
	require.NoError(t, err)
	assert.Equal(t, "http://10.0.0.1:9", c.Addr)
	assert.Equal(t, "AKL", c.Creds.AccessKey)

	t.Setenv(EnvAddr, "127.0.0.1:7")
	t.Setenv(EnvAccessKey, "AKE")
	c, err = resolveClient("", "", "")
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:7", c.Addr)
	assert.Equal(t, "AKE", c.Creds.AccessKey)
	assert.Equal(t, "SKL", c.Creds.SecretKey, "what the environment lacks comes from the login")

	c, err = resolveClient("http://127.0.0.1:8", "AKC", "SKC")
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:8", c.Addr)
	assert.Equal(t, "SKC", c.Creds.SecretKey)

	_, err = resolveClient("ftp://x", "a", "b")
	assert.ErrorContains(t, err, "address: bad API address")

	clearEnv(t)
	c, err = resolveClient("", "a", "b")
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:8080", c.Addr, "the CLI's default address")

	require.NoError(t, os.WriteFile(login, []byte(`{`), 0o600))
	t.Setenv(EnvConfig, login)
	_, err = resolveClient("", "", "")
	assert.ErrorContains(t, err, "is damaged")
}

func validateString(v validator.String, s string) []string {
	resp := &validator.StringResponse{}
	v.ValidateString(context.Background(), validator.StringRequest{Path: path.Root("x"), ConfigValue: types.StringValue(s)}, resp)
	var out []string
	for _, d := range resp.Diagnostics {
		out = append(out, d.Detail())
	}
	return out
}

func TestValidators(t *testing.T) {
	assert.Empty(t, validateString(nameValidator{}, "my-ufop"))
	assert.Equal(t, []string{`bad ufop name "My_UFOP": want 3-50 of [a-z0-9-], not starting or ending with '-' (names are global across users: use a prefix)`},
		validateString(nameValidator{}, "My_UFOP"))
	assert.Equal(t, []string{`ufop name "imageview2" is reserved (names are global across users: use a prefix)`}, validateString(nameValidator{}, "imageview2"))
	assert.Empty(t, validateString(modeValidator{}, "public"))
	assert.Equal(t, []string{`mode "2" is the CLI's number: write "private"`}, validateString(modeValidator{}, "2"))
	assert.Equal(t, []string{`mode must be "private" or "public", got "open"`}, validateString(modeValidator{}, "open"))
	assert.Empty(t, validateString(durationValidator{}, "1m30s"))
	assert.Equal(t, []string{`"soon" is not a duration: write one such as "30s" or "2m"`}, validateString(durationValidator{}, "soon"))

	resp := &validator.Int64Response{}
	atLeast{0, "instances"}.ValidateInt64(context.Background(), validator.Int64Request{Path: path.Root("instances"), ConfigValue: types.Int64Value(-1)}, resp)
	require.Len(t, resp.Diagnostics, 1)
	assert.Equal(t, "instances must be at least 0, got -1", resp.Diagnostics[0].Detail())
}

func TestObservedVersion(t *testing.T) {
	for _, tt := range []struct {
		name                       string
		current, deployed, desired int
		policy                     bool
		prior, want                int64
	}{
		{"in step", 2, 2, 1, false, 2, 2},
		{"never deployed", 1, 0, 0, false, 1, 1},
		{"stopped: the current one", 3, 2, 0, false, 2, 3},
		{"chver without upgrade by the CLI", 3, 2, 1, false, 2, 3},
		{"upgrade back by the CLI", 2, 3, 1, false, 2, 3},
		{"both changed", 4, 3, 1, false, 2, 4},
		{"a policy at 0 runs what is deployed", 2, 1, 0, true, 2, 1},
	} {
		rec := &api.UFOP{Current: tt.current, Deployed: tt.deployed, Desired: tt.desired}
		if tt.policy {
			rec.ScalePolicy = &api.ScalePolicy{}
		}
		assert.Equal(t, tt.want, observedVersion(rec, tt.prior), tt.name)
	}
}

func TestSamePolicy(t *testing.T) {
	have := &api.ScalePolicy{Min: 1, Max: 3, Target: 2, Interval: "2s", UpCooldown: "2s", DownCooldown: "15s", DownWindow: "1m0s"}
	assert.True(t, samePolicy(have, api.ScalePolicy{Min: 1, Max: 3, Target: 2}), "durations left out take what is in force")
	assert.True(t, samePolicy(have, api.ScalePolicy{Min: 1, Max: 3, Target: 2, DownWindow: "60s"}), "the same duration written otherwise")
	assert.False(t, samePolicy(have, api.ScalePolicy{Min: 1, Max: 3, Target: 2, Interval: "5s"}))
	assert.False(t, samePolicy(have, api.ScalePolicy{Min: 0, Max: 3, Target: 2}))
	assert.False(t, samePolicy(nil, api.ScalePolicy{Min: 1, Max: 3, Target: 2}))
	assert.Equal(t, "1m", keepSpelling(types.StringValue("1m"), "1m0s").ValueString())
	assert.Equal(t, "2s", keepSpelling(types.StringValue("1m"), "2s").ValueString())
	assert.Equal(t, "2s", keepSpelling(types.StringNull(), "2s").ValueString())
}

// A failed build's error is the build's error and the log's last lines,
// indented so that the CLI prints them as they are.
func TestBuildFailure(t *testing.T) {
	var log strings.Builder
	for i := 0; i < 30; i++ {
		log.WriteString("line\n")
	}
	log.WriteString("qufop: build_script line 2: exit 3\nERROR: build_script line 2 (\"exit 3\") failed: exit code 3\n")
	msg := buildFailure(&api.Version{Version: 4, State: api.StateFailed, Error: `build_script line 2 ("exit 3") failed: exit code 3`}, log.String())
	assert.True(t, strings.HasPrefix(msg, `build_script line 2 ("exit 3") failed: exit code 3`+"\n\nThe build log's last 20 lines:\n"), msg)
	assert.Contains(t, msg, "\n  ERROR: build_script line 2 (\"exit 3\") failed: exit code 3\n")
	assert.Equal(t, 20, strings.Count(msg, "\n  "), msg)
	assert.Contains(t, buildFailure(&api.Version{State: api.StateFailed}, ""), `the build failed (state "build failed")`)
}
