package provider

import (
	"context"
	"sort"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/qufop/qufop/client"
)

// ufopDataSource is a UFOP's state: qufop info, qufop version, qufop state.
type ufopDataSource struct{ c *client.Client }

func newUFOPDataSource() datasource.DataSource { return &ufopDataSource{} }

type ufopDataModel struct {
	Name            types.String       `tfsdk:"name"`
	Owner           types.String       `tfsdk:"owner"`
	Mode            types.String       `tfsdk:"mode"`
	Description     types.String       `tfsdk:"description"`
	CurrentVersion  types.Int64        `tfsdk:"current_version"`
	DeployedVersion types.Int64        `tfsdk:"deployed_version"`
	Desired         types.Int64        `tfsdk:"desired_instances"`
	MaxInstances    types.Int64        `tfsdk:"max_instances"`
	Flavor          types.String       `tfsdk:"flavor"`
	Scale           *scaleDataModel    `tfsdk:"scale"`
	Versions        []versionDataModel `tfsdk:"versions"`
	Instances       []instanceModel    `tfsdk:"instances"`
	Operation       *operationModel    `tfsdk:"operation"`
}

type scaleDataModel struct {
	Min          types.Int64   `tfsdk:"min"`
	Max          types.Int64   `tfsdk:"max"`
	Target       types.Float64 `tfsdk:"target"`
	Interval     types.String  `tfsdk:"interval"`
	UpCooldown   types.String  `tfsdk:"up_cooldown"`
	DownCooldown types.String  `tfsdk:"down_cooldown"`
	DownWindow   types.String  `tfsdk:"down_window"`
}

type versionDataModel struct {
	Version     types.Int64  `tfsdk:"version"`
	State       types.String `tfsdk:"state"`
	Description types.String `tfsdk:"description"`
	Image       types.String `tfsdk:"image"`
	Dir         types.String `tfsdk:"dir"`
	Error       types.String `tfsdk:"error"`
	CreatedAt   types.String `tfsdk:"created_at"`
}

type instanceModel struct {
	Index    types.Int64  `tfsdk:"index"`
	ID       types.String `tfsdk:"id"`
	Version  types.Int64  `tfsdk:"version"`
	State    types.String `tfsdk:"state"`
	Healthy  types.Bool   `tfsdk:"healthy"`
	Restarts types.Int64  `tfsdk:"restarts"`
	Message  types.String `tfsdk:"message"`
}

type operationModel struct {
	Kind    types.String `tfsdk:"kind"`
	Version types.Int64  `tfsdk:"version"`
	Count   types.Int64  `tfsdk:"count"`
	Done    types.Bool   `tfsdk:"done"`
	Error   types.String `tfsdk:"error"`
}

func (d *ufopDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_ufop"
}

func (d *ufopDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	str := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{Computed: true, Description: desc}
	}
	num := func(desc string) schema.Int64Attribute {
		return schema.Int64Attribute{Computed: true, Description: desc}
	}
	resp.Schema = schema.Schema{
		Description: "The state of a UFOP: its record, versions, instances and last operation (qufop info, version, state). " +
			"Of another user's public UFOP only name, mode and description are known.",
		Attributes: map[string]schema.Attribute{
			"name": schema.StringAttribute{
				Required: true, Description: "The UFOP's name.", Validators: []validator.String{nameValidator{}},
			},
			"owner":             str("Its owner (empty for another user's public UFOP)."),
			"mode":              str(`"private" or "public".`),
			"description":       str("Its description."),
			"current_version":   num("The version chosen as current (0: none)."),
			"deployed_version":  num("The version the instances run (0: none)."),
			"desired_instances": num("The instance count asked for."),
			"max_instances":     num("The most instances it may run."),
			"flavor":            str("The flavor of the version it runs (else the current one, else the newest)."),
			"scale": schema.SingleNestedAttribute{
				Computed: true, Description: "The scale policy in force (null: manual counts).",
				Attributes: map[string]schema.Attribute{
					"min": num("Fewest instances."), "max": num("Most instances."),
					"target":   schema.Float64Attribute{Computed: true, Description: "Work one instance should carry."},
					"interval": str("Evaluation interval."), "up_cooldown": str("Cooldown up."),
					"down_cooldown": str("Cooldown down."), "down_window": str("Scale-down window."),
				},
			},
			"versions": schema.ListNestedAttribute{
				Computed: true, Description: "Every version, oldest first.",
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"version": num("Its number."), "state": str(`"building", "build success" or "build failed".`),
					"description": str("Its description."), "image": str("The image (Docker builds)."),
					"dir": str("The built folder (process builds)."), "error": str("Why the build failed."),
					"created_at": str("When it was uploaded (RFC 3339)."),
				}},
			},
			"instances": schema.ListNestedAttribute{
				Computed: true, Description: "The instances, by index (from 1).",
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"index": num("Index from 1 (qufop logs -index)."), "id": str("The orchestrator's id."),
					"version": num("The version it runs."), "state": str("starting, running, stopping, failed or exited."),
					"healthy":  schema.BoolAttribute{Computed: true, Description: "Whether its health check passes."},
					"restarts": num("How often it restarted."), "message": str("What the orchestrator says of it."),
				}},
			},
			"operation": schema.SingleNestedAttribute{
				Computed: true, Description: "The last resize, upgrade, scale-policy change or unreg (null: none).",
				Attributes: map[string]schema.Attribute{
					"kind": str("resize, upgrade, scale-policy or unreg."), "version": num("The version it deploys."),
					"count": num("The count it asks."), "done": schema.BoolAttribute{Computed: true, Description: "Whether it ended."},
					"error": str("Why it failed (empty: it did not)."),
				},
			},
		},
	}
}

func (d *ufopDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	c, err := configuredClient(req.ProviderData)
	if err != nil {
		resp.Diagnostics.AddError(err.Error(), "")
		return
	}
	d.c = c
}

func (d *ufopDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m ufopDataModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name := m.Name.ValueString()
	rec, err := d.c.Info(ctx, name)
	if err != nil {
		resp.Diagnostics.AddError("Cannot read UFOP "+name, err.Error())
		return
	}
	m.Owner, m.Mode, m.Description = types.StringValue(rec.Owner), types.StringValue(rec.Mode), types.StringValue(rec.Description)
	m.CurrentVersion, m.DeployedVersion = types.Int64Value(int64(rec.Current)), types.Int64Value(int64(rec.Deployed))
	m.Desired, m.MaxInstances = types.Int64Value(int64(rec.Desired)), types.Int64Value(int64(rec.MaxInstances))
	m.Flavor = types.StringValue(rec.Flavor)
	m.Versions, m.Instances = []versionDataModel{}, []instanceModel{}
	if p := rec.ScalePolicy; p != nil {
		m.Scale = &scaleDataModel{
			Min: types.Int64Value(int64(p.Min)), Max: types.Int64Value(int64(p.Max)), Target: types.Float64Value(p.Target),
			Interval: types.StringValue(p.Interval), UpCooldown: types.StringValue(p.UpCooldown),
			DownCooldown: types.StringValue(p.DownCooldown), DownWindow: types.StringValue(p.DownWindow),
		}
	}
	if rec.Owner == "" {
		// Another user's public UFOP: the API tells no more.
		resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
		return
	}
	vs, err := d.c.Versions(ctx, name)
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the versions of UFOP "+name, err.Error())
		return
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].Version < vs[j].Version })
	for _, v := range vs {
		created := ""
		if !v.CreatedAt.IsZero() {
			created = v.CreatedAt.UTC().Format(time.RFC3339)
		}
		m.Versions = append(m.Versions, versionDataModel{
			Version: types.Int64Value(int64(v.Version)), State: types.StringValue(v.State),
			Description: types.StringValue(v.Description), Image: types.StringValue(v.Image), Dir: types.StringValue(v.Dir),
			Error: types.StringValue(v.Error), CreatedAt: types.StringValue(created),
		})
	}
	st, err := d.c.State(ctx, name)
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the instances of UFOP "+name, err.Error())
		return
	}
	in := st.Instances
	sort.Slice(in, func(i, j int) bool { return in[i].Index < in[j].Index })
	for _, i := range in {
		m.Instances = append(m.Instances, instanceModel{
			Index: types.Int64Value(int64(i.Index)), ID: types.StringValue(i.ID), Version: types.Int64Value(int64(i.Version)),
			State: types.StringValue(i.State), Healthy: types.BoolValue(i.Healthy), Restarts: types.Int64Value(int64(i.Restarts)),
			Message: types.StringValue(i.Message),
		})
	}
	if op := st.Operation; op != nil {
		m.Operation = &operationModel{
			Kind: types.StringValue(op.Kind), Version: types.Int64Value(int64(op.Version)), Count: types.Int64Value(int64(op.Count)),
			Done: types.BoolValue(op.Done), Error: types.StringValue(op.Error),
		}
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}
