package provider

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/control/api"
)

// deploymentResource is what a UFOP runs: its current version (qufop
// chver, qufop upgrade) and its instance count (qufop resize) or scale
// policy (qufop scale-policy).
type deploymentResource struct{ c *client.Client }

func newDeploymentResource() resource.Resource { return &deploymentResource{} }

// defaultWaitTimeout bounds each wait for instances, as the CLI's
// --timeout does (5m there: an apply does more in one go).
const defaultWaitTimeout = "10m"

type deploymentModel struct {
	ID              types.String `tfsdk:"id"`
	UFOP            types.String `tfsdk:"ufop"`
	Version         types.Int64  `tfsdk:"version"`
	Instances       types.Int64  `tfsdk:"instances"`
	Scale           *scaleModel  `tfsdk:"scale"`
	WaitTimeout     types.String `tfsdk:"wait_timeout"`
	CurrentVersion  types.Int64  `tfsdk:"current_version"`
	DeployedVersion types.Int64  `tfsdk:"deployed_version"`
	Desired         types.Int64  `tfsdk:"desired_instances"`
}

type scaleModel struct {
	Min          types.Int64   `tfsdk:"min"`
	Max          types.Int64   `tfsdk:"max"`
	Target       types.Float64 `tfsdk:"target"`
	Interval     types.String  `tfsdk:"interval"`
	UpCooldown   types.String  `tfsdk:"up_cooldown"`
	DownCooldown types.String  `tfsdk:"down_cooldown"`
	DownWindow   types.String  `tfsdk:"down_window"`
}

func (r *deploymentResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_ufop_deployment"
}

func (r *deploymentResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	dur := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{
			Optional: true, Computed: true, Description: desc,
			Validators: []validator.String{durationValidator{min: 0}},
		}
	}
	resp.Schema = schema.Schema{
		Description: "What a UFOP runs: a version (changing it is a gray upgrade, as qufop chver and qufop upgrade do) and " +
			"either a fixed instance count (qufop resize) or a scale policy (qufop scale-policy). Destroying it stops the " +
			"instances (scale policy off, resize to 0); the UFOP and its versions stay.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed: true, Description: "The UFOP's name.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"ufop": schema.StringAttribute{
				Required:      true,
				Description:   "Name of the UFOP (qufop_ufop.x.name).",
				Validators:    []validator.String{nameValidator{}},
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"version": schema.Int64Attribute{
				Required:    true,
				Description: "The version to run (qufop_ufop_version.x.version), a successful build. Changing it makes it current and replaces the running instances with a gray upgrade, waiting until the new ones are healthy.",
				Validators:  []validator.Int64{atLeast{1, "version"}},
			},
			"instances": schema.Int64Attribute{
				Optional:    true,
				Description: "A fixed number of instances (qufop resize); 0 stops them. Conflicts with scale.",
				Validators:  []validator.Int64{atLeast{0, "instances"}},
			},
			"wait_timeout": schema.StringAttribute{
				Optional: true, Computed: true, Default: stringdefault.StaticString(defaultWaitTimeout),
				Description: "How long each step of an apply waits for the instances (a duration; default " + defaultWaitTimeout + "). The operation goes on on the platform after it.",
				Validators:  []validator.String{durationValidator{min: time.Second}},
			},
			"current_version": schema.Int64Attribute{
				Computed: true, Description: "The version chosen as current (qufop chver).",
			},
			"deployed_version": schema.Int64Attribute{
				Computed: true, Description: "The version the instances run.",
			},
			"desired_instances": schema.Int64Attribute{
				Computed: true, Description: "The instance count asked for now (by instances, or by the scaler).",
			},
		},
		Blocks: map[string]schema.Block{
			"scale": schema.SingleNestedBlock{
				Description: "A scale policy block instead of a fixed count: the scaler keeps ceil((steps waiting + in flight) / target) instances within [min, max]. Conflicts with instances.",
				Attributes: map[string]schema.Attribute{
					"min":           schema.Int64Attribute{Optional: true, Description: "Fewest instances (0: none while no step comes); required in the block.", Validators: []validator.Int64{atLeast{0, "scale.min"}}},
					"max":           schema.Int64Attribute{Optional: true, Description: "Most instances (at most the UFOP's limit); required in the block.", Validators: []validator.Int64{atLeast{1, "scale.max"}}},
					"target":        schema.Float64Attribute{Optional: true, Description: "Steps waiting plus in flight that one healthy instance should carry; required in the block.", Validators: []validator.Float64{positive{"scale.target"}}},
					"interval":      dur("How often the scaler evaluates the UFOP (the server's default: 2s)."),
					"up_cooldown":   dur("Quiet time after a change before the next step up (default 2s)."),
					"down_cooldown": dur("Quiet time after a change before the next step down (default 15s)."),
					"down_window":   dur("Scale down only to the highest count wanted during this window (default 30s)."),
				},
			},
		},
	}
}

// ValidateConfig refuses, at plan, a count and a policy together, or
// neither, and a policy whose range is empty.
func (r *deploymentResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var instances types.Int64
	var scale types.Object
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("instances"), &instances)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("scale"), &scale)...)
	if resp.Diagnostics.HasError() {
		return
	}
	switch {
	case !instances.IsNull() && !scale.IsNull():
		resp.Diagnostics.AddAttributeError(path.Root("instances"), "Conflicting instances and scale",
			"Give instances (a fixed count) or a scale block (the scaler sizes the UFOP within min..max), not both.")
		return
	case instances.IsNull() && scale.IsNull():
		resp.Diagnostics.AddAttributeError(path.Root("instances"), "Missing instances or scale",
			"Give instances (a fixed count, 0 for none) or a scale block (min, max, target).")
		return
	}
	if scale.IsNull() || scale.IsUnknown() {
		return
	}
	// min, max and target are Optional in the schema only because the
	// framework would require them with the block absent too.
	var minN, maxN types.Int64
	var target types.Float64
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("scale").AtName("min"), &minN)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("scale").AtName("max"), &maxN)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("scale").AtName("target"), &target)...)
	if resp.Diagnostics.HasError() {
		return
	}
	for name, null := range map[string]bool{"min": minN.IsNull(), "max": maxN.IsNull(), "target": target.IsNull()} {
		if null {
			resp.Diagnostics.AddAttributeError(path.Root("scale").AtName(name), "Missing scale."+name,
				"A scale block needs min, max and target (e.g. min = 1, max = 4, target = 8).")
		}
	}
	if resp.Diagnostics.HasError() || minN.IsUnknown() || maxN.IsUnknown() {
		return
	}
	if minN.ValueInt64() > maxN.ValueInt64() {
		resp.Diagnostics.AddAttributeError(path.Root("scale").AtName("min"), "Empty scale range",
			fmt.Sprintf("scale.min %d is over scale.max %d", minN.ValueInt64(), maxN.ValueInt64()))
	}
}

func (r *deploymentResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	c, err := configuredClient(req.ProviderData)
	if err != nil {
		resp.Diagnostics.AddError(err.Error(), "")
		return
	}
	r.c = c
}

func (r *deploymentResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m deploymentModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.apply(ctx, &m, &resp.State, &resp.Diagnostics)
}

func (r *deploymentResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var m deploymentModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.apply(ctx, &m, &resp.State, &resp.Diagnostics)
}

// apply brings the UFOP to m and records what the API then says.
func (r *deploymentResource) apply(ctx context.Context, m *deploymentModel, state *tfsdk.State, diags *diag.Diagnostics) {
	name := m.UFOP.ValueString()
	timeout, err := time.ParseDuration(m.WaitTimeout.ValueString())
	if err != nil {
		diags.AddAttributeError(path.Root("wait_timeout"), "Bad wait_timeout", err.Error())
		return
	}
	if err := converge(ctx, r.c, name, m, timeout); err != nil {
		diags.AddError("Cannot deploy UFOP "+name, err.Error())
		return
	}
	rec, err := r.c.Info(ctx, name)
	if err != nil {
		diags.AddError("Cannot read UFOP "+name+" after deploying it", err.Error())
		return
	}
	m.fill(rec, m.Version.ValueInt64())
	diags.Append(state.Set(ctx, m)...)
}

// converge runs the operations that take the UFOP from what it runs to m,
// each waited for: chver, scale policy off or set, upgrade, resize.
func converge(ctx context.Context, c *client.Client, name string, m *deploymentModel, timeout time.Duration) error {
	v := int(m.Version.ValueInt64())
	rec, err := c.Info(ctx, name)
	if err != nil {
		return err
	}
	if rec.Current != v {
		if err := whenIdle(ctx, c, name, func() error { _, err := c.Chver(ctx, name, v); return err }); err != nil {
			return fmt.Errorf("choosing version %d: %v", v, err)
		}
	}
	wait := func(g goal) error {
		wctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return waitDeploy(wctx, c, name, g)
	}
	upgrade := func(count int) error {
		var res *client.UpgradeResult
		if err := whenIdle(ctx, c, name, func() (err error) { res, err = c.Upgrade(ctx, name); return err }); err != nil {
			return fmt.Errorf("upgrading to version %d: %v", v, err)
		}
		if !res.Started {
			return nil
		}
		return wait(goal{kind: "upgrade", count: count, version: v})
	}
	resize := func(n int) error {
		var res *client.ResizeResult
		if err := whenIdle(ctx, c, name, func() (err error) { res, err = c.Resize(ctx, name, n); return err }); err != nil {
			return fmt.Errorf("resizing to %d: %v", n, err)
		}
		if !res.Started && n == 0 {
			return nil
		}
		return wait(goal{kind: "resize", count: n})
	}
	if m.Scale == nil {
		if rec.ScalePolicy != nil {
			var res *client.ScalePolicyResult
			if err := whenIdle(ctx, c, name, func() (err error) { res, err = c.ScalePolicyOff(ctx, name); return err }); err != nil {
				return fmt.Errorf("turning the scale policy off: %v", err)
			}
			if res.Started {
				if err := wait(goal{kind: "scale-policy", count: anyCount}); err != nil {
					return err
				}
			}
		}
		n := int(m.Instances.ValueInt64())
		if rec, err = c.Info(ctx, name); err != nil {
			return err
		}
		if n == 0 {
			if rec.Desired != 0 {
				return resize(0)
			}
			return nil
		}
		// Running instances of another version: the gray upgrade first, at
		// the count they run, then the new count.
		if rec.Desired > 0 && rec.Deployed != v {
			if err := upgrade(rec.Desired); err != nil {
				return err
			}
		}
		if rec.Desired != n {
			if err := resize(n); err != nil {
				return err
			}
		}
		// From 0, resize scaled what was deployed before, if anything.
		if rec, err = c.Info(ctx, name); err != nil {
			return err
		}
		if rec.Deployed != v {
			return upgrade(n)
		}
		return nil
	}
	if rec, err = c.Info(ctx, name); err != nil {
		return err
	}
	if rec.Desired > 0 && rec.Deployed != 0 && rec.Deployed != v {
		if err := upgrade(anyCount); err != nil {
			return err
		}
	}
	p, err := m.Scale.policy()
	if err != nil {
		return err
	}
	if !samePolicy(rec.ScalePolicy, p) {
		var res *client.ScalePolicyResult
		if err := whenIdle(ctx, c, name, func() (err error) { res, err = c.SetScalePolicy(ctx, name, p); return err }); err != nil {
			return fmt.Errorf("setting the scale policy: %v", err)
		}
		if res.Started {
			if err := wait(goal{kind: "scale-policy", count: anyCount}); err != nil {
				return err
			}
		}
	}
	if rec, err = c.Info(ctx, name); err != nil {
		return err
	}
	if rec.Deployed != 0 && rec.Deployed != v {
		return upgrade(anyCount)
	}
	return nil
}

// policy is the API's policy of s; a duration left out is "", the
// server's default.
func (s *scaleModel) policy() (api.ScalePolicy, error) {
	p := api.ScalePolicy{Min: int(s.Min.ValueInt64()), Max: int(s.Max.ValueInt64()), Target: s.Target.ValueFloat64()}
	for _, d := range []struct {
		v   types.String
		out *string
	}{{s.Interval, &p.Interval}, {s.UpCooldown, &p.UpCooldown}, {s.DownCooldown, &p.DownCooldown}, {s.DownWindow, &p.DownWindow}} {
		if !d.v.IsNull() && !d.v.IsUnknown() {
			*d.out = d.v.ValueString()
		}
	}
	return p, nil
}

// samePolicy reports whether the policy in force, have (its defaults
// filled in), is what want asks (its empty durations taking whatever
// is in force).
func samePolicy(have *api.ScalePolicy, want api.ScalePolicy) bool {
	if have == nil || have.Min != want.Min || have.Max != want.Max || have.Target != want.Target {
		return false
	}
	for _, d := range [][2]string{{have.Interval, want.Interval}, {have.UpCooldown, want.UpCooldown},
		{have.DownCooldown, want.DownCooldown}, {have.DownWindow, want.DownWindow}} {
		if d[1] != "" && !sameDuration(d[0], d[1]) {
			return false
		}
	}
	return true
}

func sameDuration(a, b string) bool {
	x, err1 := time.ParseDuration(a)
	y, err2 := time.ParseDuration(b)
	return err1 == nil && err2 == nil && x == y
}

// keepSpelling is the server's duration, or the prior one when it is the
// same duration written otherwise ("1m" for "1m0s"), so that the way the
// configuration writes it is no change.
func keepSpelling(prior types.String, server string) types.String {
	if !prior.IsNull() && !prior.IsUnknown() && sameDuration(prior.ValueString(), server) {
		return prior
	}
	return types.StringValue(server)
}

// observedVersion is the version the state shows. When the instances run
// another version than the current one (a chver without upgrade, by the
// CLI), it is the one that differs from what Terraform last set, so that
// the plan shows the drift and an apply sets both back.
func observedVersion(rec *api.UFOP, prior int64) int64 {
	running := rec.Deployed != 0 && (rec.Desired > 0 || rec.ScalePolicy != nil)
	if !running || rec.Deployed == rec.Current {
		return int64(rec.Current)
	}
	if int64(rec.Current) == prior {
		return int64(rec.Deployed)
	}
	return int64(rec.Current)
}

// fill records the UFOP as the API shows it: a policy in force shows as
// scale (instances null), else the count as instances.
func (m *deploymentModel) fill(rec *api.UFOP, priorVersion int64) {
	m.ID = types.StringValue(rec.Name)
	m.UFOP = types.StringValue(rec.Name)
	m.Version = types.Int64Value(observedVersion(rec, priorVersion))
	m.CurrentVersion = types.Int64Value(int64(rec.Current))
	m.DeployedVersion = types.Int64Value(int64(rec.Deployed))
	m.Desired = types.Int64Value(int64(rec.Desired))
	if m.WaitTimeout.IsNull() || m.WaitTimeout.IsUnknown() {
		m.WaitTimeout = types.StringValue(defaultWaitTimeout) // imported
	}
	if p := rec.ScalePolicy; p != nil {
		prior := m.Scale
		if prior == nil {
			prior = &scaleModel{Interval: types.StringNull(), UpCooldown: types.StringNull(), DownCooldown: types.StringNull(), DownWindow: types.StringNull()}
		}
		m.Scale = &scaleModel{
			Min: types.Int64Value(int64(p.Min)), Max: types.Int64Value(int64(p.Max)), Target: types.Float64Value(p.Target),
			Interval:     keepSpelling(prior.Interval, p.Interval),
			UpCooldown:   keepSpelling(prior.UpCooldown, p.UpCooldown),
			DownCooldown: keepSpelling(prior.DownCooldown, p.DownCooldown),
			DownWindow:   keepSpelling(prior.DownWindow, p.DownWindow),
		}
		m.Instances = types.Int64Null()
		return
	}
	m.Scale = nil
	m.Instances = types.Int64Value(int64(rec.Desired))
}

func (r *deploymentResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m deploymentModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name := m.UFOP.ValueString()
	rec, err := r.c.Info(ctx, name)
	if client.IsStatus(err, http.StatusNotFound) {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		resp.Diagnostics.AddError("Cannot read UFOP "+name, err.Error())
		return
	}
	if rec.Owner == "" {
		resp.Diagnostics.AddError("UFOP "+name+" is not yours", "It is another user's public UFOP: only its owner can deploy it.")
		return
	}
	m.fill(rec, m.Version.ValueInt64())
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *deploymentResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m deploymentModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name := m.UFOP.ValueString()
	timeout, err := time.ParseDuration(m.WaitTimeout.ValueString())
	if err != nil {
		timeout, _ = time.ParseDuration(defaultWaitTimeout)
	}
	rec, err := r.c.Info(ctx, name)
	if client.IsStatus(err, http.StatusNotFound) {
		return
	}
	if err != nil {
		resp.Diagnostics.AddError("Cannot read UFOP "+name, err.Error())
		return
	}
	if err := stopAll(ctx, r.c, name, rec, timeout); err != nil {
		resp.Diagnostics.AddError("Cannot stop the instances of UFOP "+name, err.Error())
	}
}

// stopAll turns the scale policy off and resizes to 0, waiting until no
// instance runs.
func stopAll(ctx context.Context, c *client.Client, name string, rec *api.UFOP, timeout time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if rec.ScalePolicy != nil {
		if err := whenIdle(ctx, c, name, func() error { _, err := c.ScalePolicyOff(ctx, name); return err }); err != nil {
			return fmt.Errorf("turning the scale policy off: %v", err)
		}
	}
	if err := whenIdle(ctx, c, name, func() error { _, err := c.Resize(ctx, name, 0); return err }); err != nil {
		return fmt.Errorf("resizing to 0: %v", err)
	}
	return waitDeploy(wctx, c, name, goal{kind: "resize", count: 0})
}

func (r *deploymentResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	if err := checkName(req.ID); err != nil {
		resp.Diagnostics.AddError("Bad import ID", err.Error()+": import a deployment by its UFOP's name")
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("ufop"), req.ID)...)
}
