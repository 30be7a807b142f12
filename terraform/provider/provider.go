// Package provider is the Terraform provider of qufop (terraform-plugin-
// framework): UFOPs, their versions and their deployments as resources, a
// UFOP's state as a data source. It talks to the management API only
// through package client, with the keys the CLI uses.
package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/client"
)

// The environment the CLI reads (cli/client.go), and its login file.
const (
	EnvAddr      = "QUFOP_ADDR"
	EnvAccessKey = "QUFOP_ACCESS_KEY"
	EnvSecretKey = "QUFOP_SECRET_KEY"
	EnvConfig    = "QUFOP_CONFIG"
)

// New returns the provider factory providerserver.Serve takes.
func New(version string) func() provider.Provider {
	return func() provider.Provider { return &qufopProvider{version: version} }
}

type qufopProvider struct{ version string }

type providerModel struct {
	Address   types.String `tfsdk:"address"`
	AccessKey types.String `tfsdk:"access_key"`
	SecretKey types.String `tfsdk:"secret_key"`
}

func (p *qufopProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "qufop"
	resp.Version = p.version
}

func (p *qufopProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Manages UFOPs on a qufop platform through its management API. " +
			"Each setting left out is taken as the qufop CLI takes it: from QUFOP_ADDR, QUFOP_ACCESS_KEY and " +
			"QUFOP_SECRET_KEY, else from the login `qufop login` saved ($QUFOP_CONFIG or ~/.qufop/config.json).",
		Attributes: map[string]schema.Attribute{
			"address": schema.StringAttribute{
				Optional:    true,
				Description: "The management API: http(s)://host:port or host:port. Default: QUFOP_ADDR, the saved login, else " + client.DefaultAddr + ".",
			},
			"access_key": schema.StringAttribute{
				Optional:    true,
				Description: "Access key of the user the UFOPs belong to. Default: QUFOP_ACCESS_KEY, else the saved login.",
			},
			"secret_key": schema.StringAttribute{
				Optional:    true,
				Sensitive:   true,
				Description: "Secret key of that user. Default: QUFOP_SECRET_KEY, else the saved login.",
			},
		},
	}
}

// savedLogin is the file `qufop login` writes (cli/client.go loginConfig).
type savedLogin struct {
	Addr      string `json:"addr"`
	AccessKey string `json:"access_key"`
	SecretKey string `json:"secret_key"`
}

// readSavedLogin reads the CLI's login file; a missing one is empty.
func readSavedLogin() (savedLogin, error) {
	var l savedLogin
	p := os.Getenv(EnvConfig)
	if p == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return l, nil // no home: no saved login, the environment must do
		}
		p = filepath.Join(home, ".qufop", "config.json")
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return l, fmt.Errorf("reading the qufop login %s: %v", p, err)
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return l, fmt.Errorf("qufop login file %s is damaged (%v): run qufop login again, or set the provider's keys", p, err)
	}
	return l, nil
}

func (p *qufopProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var m providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	for name, v := range map[string]types.String{"address": m.Address, "access_key": m.AccessKey, "secret_key": m.SecretKey} {
		if v.IsUnknown() {
			resp.Diagnostics.AddAttributeError(path.Root(name), "qufop provider: "+name+" is not known yet",
				"The provider needs its "+name+" to plan: give it a value known before apply (a variable, not another resource's result).")
		}
	}
	if resp.Diagnostics.HasError() {
		return
	}
	c, err := resolveClient(m.Address.ValueString(), m.AccessKey.ValueString(), m.SecretKey.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("qufop provider: "+err.Error(), "")
		return
	}
	resp.ResourceData = c
	resp.DataSourceData = c
}

// resolveClient fills what the configuration left out as the CLI does:
// the environment, then the saved login, then the default address.
func resolveClient(addr, ak, sk string) (*client.Client, error) {
	pick := func(v, env, saved string) string {
		if v != "" {
			return v
		}
		if e := os.Getenv(env); e != "" {
			return e
		}
		return saved
	}
	var saved savedLogin
	if addr == "" || ak == "" || sk == "" {
		var err error
		if saved, err = readSavedLogin(); err != nil {
			return nil, err
		}
	}
	addr = pick(addr, EnvAddr, saved.Addr)
	ak = pick(ak, EnvAccessKey, saved.AccessKey)
	sk = pick(sk, EnvSecretKey, saved.SecretKey)
	if ak == "" || sk == "" {
		return nil, errors.New("no keys: set access_key and secret_key in the provider block, or QUFOP_ACCESS_KEY and QUFOP_SECRET_KEY, or run qufop login")
	}
	if addr == "" {
		addr = client.DefaultAddr
	}
	if _, err := client.BaseURL(addr); err != nil {
		return nil, fmt.Errorf("address: %v", err)
	}
	return client.New(addr, auth.Credentials{AccessKey: ak, SecretKey: sk}), nil
}

func (p *qufopProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{newUFOPResource, newVersionResource, newDeploymentResource}
}

func (p *qufopProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{newUFOPDataSource}
}

// configuredClient is the client Configure made, for a resource's or data
// source's Configure (nil before the provider is configured, as during
// validation).
func configuredClient(data any) (*client.Client, error) {
	if data == nil {
		return nil, nil
	}
	c, ok := data.(*client.Client)
	if !ok {
		return nil, fmt.Errorf("qufop provider: unexpected provider data %T (a bug: please report it)", data)
	}
	return c, nil
}
