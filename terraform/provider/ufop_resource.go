package provider

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/ufop"
)

// ufopResource is a registered UFOP: qufop reg / qufop unreg.
type ufopResource struct{ c *client.Client }

func newUFOPResource() resource.Resource { return &ufopResource{} }

type ufopModel struct {
	ID          types.String `tfsdk:"id"`
	Name        types.String `tfsdk:"name"`
	Mode        types.String `tfsdk:"mode"`
	Description types.String `tfsdk:"description"`
	Owner       types.String `tfsdk:"owner"`
	CreatedAt   types.String `tfsdk:"created_at"`
}

func (r *ufopResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_ufop"
}

// replaceWarning forces a replacement when the value changes, and says
// in the plan what replacing costs: the API has no call that changes a
// registered UFOP, so the change is an unreg and a reg.
func replaceWarning(what string) planmodifier.String {
	return stringplanmodifier.RequiresReplaceIf(func(_ context.Context, req planmodifier.StringRequest, resp *stringplanmodifier.RequiresReplaceIfFuncResponse) {
		resp.RequiresReplace = true
		resp.Diagnostics.AddAttributeWarning(req.Path, "Changing "+what+" replaces the UFOP",
			"The management API cannot change the "+what+" of a registered UFOP: the change unregisters it (its versions and instances go) and registers it again.")
	}, "The API cannot change the "+what+" of a UFOP: a change replaces it (unreg, reg).",
		"The API cannot change the "+what+" of a UFOP: a change replaces it (unreg, reg).")
}

func (r *ufopResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "A registered UFOP (qufop reg). Destroying it is qufop unreg: its instances stop and its versions and images are deleted.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed: true, Description: "The UFOP's name.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				Required:      true,
				Description:   "The UFOP's name, the first word of its processing commands: 3-50 of [a-z0-9-]. Names are global across users. Changing it replaces the UFOP.",
				Validators:    []validator.String{nameValidator{}},
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"mode": schema.StringAttribute{
				Optional: true, Computed: true,
				Default:       stringdefault.StaticString("private"),
				Description:   `"private" (only its owner's buckets may call it; the default) or "public". Changing it replaces the UFOP: the API cannot change it.`,
				Validators:    []validator.String{modeValidator{}},
				PlanModifiers: []planmodifier.String{replaceWarning("mode")},
			},
			"description": schema.StringAttribute{
				Optional: true, Computed: true,
				Default:       stringdefault.StaticString(""),
				Description:   "Free text. Changing it replaces the UFOP: the API cannot change it.",
				PlanModifiers: []planmodifier.String{replaceWarning("description")},
			},
			"owner": schema.StringAttribute{
				Computed: true, Description: "The user the UFOP belongs to.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"created_at": schema.StringAttribute{
				Computed: true, Description: "When it was registered (RFC 3339).",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
		},
	}
}

func (r *ufopResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	c, err := configuredClient(req.ProviderData)
	if err != nil {
		resp.Diagnostics.AddError(err.Error(), "")
		return
	}
	r.c = c
}

func (m *ufopModel) fill(rec *api.UFOP) {
	m.ID = types.StringValue(rec.Name)
	m.Name = types.StringValue(rec.Name)
	m.Mode = types.StringValue(rec.Mode)
	m.Description = types.StringValue(rec.Description)
	m.Owner = types.StringValue(rec.Owner)
	m.CreatedAt = types.StringValue("")
	if !rec.CreatedAt.IsZero() {
		m.CreatedAt = types.StringValue(rec.CreatedAt.UTC().Format(time.RFC3339))
	}
}

func (r *ufopResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m ufopModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name := m.Name.ValueString()
	if _, err := r.c.Register(ctx, name, m.Mode.ValueString(), m.Description.ValueString()); err != nil {
		if client.IsStatus(err, ufop.StatusExists) {
			resp.Diagnostics.AddError("Cannot register UFOP "+name, err.Error()+
				fmt.Sprintf(" (names are global). If it is yours, bring it under Terraform with: terraform import <resource address> %s", name))
			return
		}
		resp.Diagnostics.AddError("Cannot register UFOP "+name, err.Error())
		return
	}
	// The record as Info shows it, so that the state is what Read sees.
	rec, err := r.c.Info(ctx, name)
	if err != nil {
		resp.Diagnostics.AddError("Cannot read UFOP "+name+" after registering it", err.Error())
		return
	}
	m.fill(rec)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *ufopResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m ufopModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name := m.Name.ValueString()
	rec, err := r.c.Info(ctx, name)
	if client.IsStatus(err, http.StatusNotFound) {
		resp.State.RemoveResource(ctx) // unregistered behind Terraform's back
		return
	}
	if err != nil {
		resp.Diagnostics.AddError("Cannot read UFOP "+name, err.Error())
		return
	}
	if rec.Owner == "" {
		resp.Diagnostics.AddError("UFOP "+name+" is not yours",
			"It is another user's public UFOP: only its owner can manage it. Use the data source qufop_ufop to read it, or choose another name.")
		return
	}
	m.fill(rec)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// Update is never called with a change the API could make: every
// attribute forces a replacement.
func (r *ufopResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var m ufopModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *ufopResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m ufopModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name := m.Name.ValueString()
	// A resize or upgrade still running (the scaler's, a CLI user's)
	// refuses the unreg for a moment: wait for it.
	var res *api.Unregistered
	err := whenIdle(ctx, r.c, name, func() (err error) { res, err = r.c.Unregister(ctx, name); return err })
	if client.IsStatus(err, http.StatusNotFound) {
		return
	}
	if err != nil {
		resp.Diagnostics.AddError("Cannot unregister UFOP "+name, err.Error())
		return
	}
	for _, w := range res.Warnings {
		resp.Diagnostics.AddWarning("Unregistering UFOP "+name, w)
	}
}

func (r *ufopResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	if err := checkName(req.ID); err != nil {
		resp.Diagnostics.AddError("Bad import ID", err.Error()+": import a UFOP by its name")
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("name"), req.ID)...)
}
