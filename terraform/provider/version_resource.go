package provider

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/internal/ufopsrc"
)

// versionResource is one build of a UFOP: qufop build.
type versionResource struct{ c *client.Client }

func newVersionResource() resource.Resource { return &versionResource{} }

type versionModel struct {
	ID          types.String `tfsdk:"id"`
	UFOP        types.String `tfsdk:"ufop"`
	Source      types.String `tfsdk:"source"`
	SourceHash  types.String `tfsdk:"source_hash"`
	Description types.String `tfsdk:"description"`
	Version     types.Int64  `tfsdk:"version"`
	State       types.String `tfsdk:"state"`
	Image       types.String `tfsdk:"image"`
	Dir         types.String `tfsdk:"dir"`
	CreatedAt   types.String `tfsdk:"created_at"`
}

// buildLogLines is how much of a failed build's log its error shows.
const buildLogLines = 20

func (r *versionResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_ufop_version"
}

func (r *versionResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	keep := func() []planmodifier.String {
		return []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	}
	resp.Schema = schema.Schema{
		Description: "A version of a UFOP: its source uploaded and built (qufop build). A change of the source's content " +
			"(source_hash) makes a new version. The API cannot delete a version: destroying one only forgets it; " +
			"versions go with their UFOP (qufop unreg).",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed: true, Description: "<ufop>/<version>.", PlanModifiers: keep(),
			},
			"ufop": schema.StringAttribute{
				Required:      true,
				Description:   "Name of the UFOP (qufop_ufop.x.name).",
				Validators:    []validator.String{nameValidator{}},
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"source": schema.StringAttribute{
				Required: true,
				Description: "Path of the source: a folder with ufop.yaml at its root (packed as qufop build packs it) or a " +
					".tar, .tar.gz or .tgz file. Relative paths are from the working folder: use path.module.",
				Validators: []validator.String{nonEmpty{"source"}},
			},
			"source_hash": schema.StringAttribute{
				Computed: true,
				Description: "SHA-256 of the source, computed at plan: of a tarball's bytes; of a folder's files (paths, " +
					"modes, contents and symlinks; not modification times). A change builds a new version.",
				PlanModifiers: []planmodifier.String{sourceHashModifier{}},
			},
			"description": schema.StringAttribute{
				Optional: true, Computed: true, Default: stringdefault.StaticString(""),
				Description:   "Description of the version (qufop build -d). A change builds a new version: the API cannot change it.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"version": schema.Int64Attribute{
				Computed: true, Description: "The version number the platform gave the build.",
				PlanModifiers: []planmodifier.Int64{int64planmodifier.UseStateForUnknown()},
			},
			"state": schema.StringAttribute{
				Computed: true, Description: `The build state: "build success" (a failed build fails the apply).`, PlanModifiers: keep(),
			},
			"image": schema.StringAttribute{
				Computed: true, Description: "The image pushed (Docker builds); empty for process builds.", PlanModifiers: keep(),
			},
			"dir": schema.StringAttribute{
				Computed: true, Description: "The built folder (process builds, qufop dev --no-docker); empty for images.", PlanModifiers: keep(),
			},
			"created_at": schema.StringAttribute{
				Computed: true, Description: "When it was uploaded (RFC 3339).", PlanModifiers: keep(),
			},
		},
	}
}

// sourceHashModifier plans source_hash from the source's content, and
// replaces the version when it changed. An imported version has no hash
// yet: the first plan records it in place, without a build.
type sourceHashModifier struct{}

func (sourceHashModifier) Description(context.Context) string {
	return "computed from the source's content at plan; a change replaces the version (a new build)"
}
func (m sourceHashModifier) MarkdownDescription(ctx context.Context) string {
	return m.Description(ctx)
}

func (sourceHashModifier) PlanModifyString(ctx context.Context, req planmodifier.StringRequest, resp *planmodifier.StringResponse) {
	if req.Plan.Raw.IsNull() {
		return // destroy
	}
	var src types.String
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("source"), &src)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if src.IsUnknown() || src.IsNull() {
		resp.PlanValue = types.StringUnknown()
		resp.RequiresReplace = !req.StateValue.IsNull()
		return
	}
	sum, err := ufopsrc.Digest(src.ValueString())
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("source"), "Cannot read the UFOP source", err.Error())
		return
	}
	resp.PlanValue = types.StringValue(sum)
	if !req.StateValue.IsNull() && !req.StateValue.IsUnknown() && req.StateValue.ValueString() != sum {
		resp.RequiresReplace = true
	}
}

func (r *versionResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	c, err := configuredClient(req.ProviderData)
	if err != nil {
		resp.Diagnostics.AddError(err.Error(), "")
		return
	}
	r.c = c
}

func (m *versionModel) fill(name string, v *api.Version) {
	m.ID = types.StringValue(name + "/" + strconv.Itoa(v.Version))
	m.UFOP = types.StringValue(name)
	m.Version = types.Int64Value(int64(v.Version))
	m.State = types.StringValue(v.State)
	m.Image = types.StringValue(v.Image)
	m.Dir = types.StringValue(v.Dir)
	m.Description = types.StringValue(v.Description)
	m.CreatedAt = types.StringValue("")
	if !v.CreatedAt.IsZero() {
		m.CreatedAt = types.StringValue(v.CreatedAt.UTC().Format(time.RFC3339))
	}
}

func (r *versionResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m versionModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name, src := m.UFOP.ValueString(), m.Source.ValueString()
	sum, err := ufopsrc.Digest(src)
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("source"), "Cannot read the UFOP source", err.Error())
		return
	}
	if !m.SourceHash.IsUnknown() && m.SourceHash.ValueString() != sum {
		resp.Diagnostics.AddAttributeError(path.Root("source"), "The UFOP source changed since the plan",
			fmt.Sprintf("%s has SHA-256 %s now, %s at plan: plan and apply again", src, sum, m.SourceHash.ValueString()))
		return
	}
	m.SourceHash = types.StringValue(sum)
	tarPath, done, err := ufopsrc.Tarball(src)
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("source"), "Cannot pack the UFOP source", err.Error())
		return
	}
	defer done()
	n, err := upload(ctx, r.c, name, m.Description.ValueString(), tarPath)
	if err != nil {
		resp.Diagnostics.AddError("Cannot upload a version of UFOP "+name, err.Error())
		return
	}
	tflog.Info(ctx, "uploaded; building", map[string]any{"ufop": name, "version": n})
	// The log stream ends with the build (or is cut): the version's state
	// says how it ended.
	var log bytes.Buffer
	if err := r.c.BuildLog(ctx, name, n, true, &log); err != nil && ctx.Err() == nil {
		tflog.Warn(ctx, "build log: "+err.Error(), map[string]any{"ufop": name, "version": n})
	}
	v, err := waitBuilt(ctx, r.c, name, n)
	if err != nil {
		resp.Diagnostics.AddError(fmt.Sprintf("Build of %s version %d", name, n), err.Error())
		return
	}
	if v.State != api.StateSuccess {
		if log.Len() == 0 {
			_ = r.c.BuildLog(ctx, name, n, false, &log)
		}
		resp.Diagnostics.AddError(fmt.Sprintf("Build of %s version %d failed", name, n), buildFailure(v, log.String()))
		return
	}
	m.fill(name, v)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// buildFailure is the error of a failed build: the build's error (the
// failing build_script line and its exit code) and the log's last lines,
// indented so that Terraform prints them as they are.
func buildFailure(v *api.Version, log string) string {
	var b strings.Builder
	msg := v.Error
	if msg == "" {
		msg = "the build failed (state " + strconv.Quote(v.State) + ")"
	}
	b.WriteString(msg)
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	if len(lines) > buildLogLines {
		lines = lines[len(lines)-buildLogLines:]
	}
	if strings.TrimSpace(log) != "" {
		fmt.Fprintf(&b, "\n\nThe build log's last %d lines:\n", len(lines))
		for _, l := range lines {
			b.WriteString("  " + l + "\n")
		}
	}
	b.WriteString("\nThe failed version stays on the platform (the API cannot delete a version); the next apply uploads the source again.")
	return b.String()
}

// upload sends the tarball at p with its SHA-256, which the API requires.
func upload(ctx context.Context, c *client.Client, name, desc, p string) (int, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %v", p, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	return c.Upload(ctx, name, desc, f, size, hex.EncodeToString(h.Sum(nil)))
}

// waitBuilt polls version n until its build ended.
func waitBuilt(ctx context.Context, c *client.Client, name string, n int) (*api.Version, error) {
	for {
		v, err := c.Version(ctx, name, n)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("interrupted; the build goes on: see qufop version %s -v %d", name, n)
			}
			return nil, err
		}
		if v.State != api.StateBuilding {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("interrupted; the build goes on: see qufop version %s -v %d", name, n)
		case <-time.After(pollInterval):
		}
	}
}

func (r *versionResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m versionModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name, n := m.UFOP.ValueString(), int(m.Version.ValueInt64())
	v, err := r.c.Version(ctx, name, n)
	if client.IsStatus(err, http.StatusNotFound) {
		resp.State.RemoveResource(ctx) // the UFOP was unregistered
		return
	}
	if err != nil {
		resp.Diagnostics.AddError(fmt.Sprintf("Cannot read version %d of UFOP %s", n, name), err.Error())
		return
	}
	m.fill(name, v)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// Update changes only what needs no build: the source's path (its
// content unchanged), or the hash an imported version had not recorded.
func (r *versionResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state versionModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	state.Source, state.SourceHash = plan.Source, plan.SourceHash
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *versionResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m versionModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	// The API has no call that deletes one version: it is only forgotten,
	// and goes with its UFOP. Say so unless the UFOP is already gone.
	name := m.UFOP.ValueString()
	if _, err := r.c.Version(ctx, name, int(m.Version.ValueInt64())); err == nil {
		resp.Diagnostics.AddWarning(fmt.Sprintf("Version %d of UFOP %s is kept on the platform", m.Version.ValueInt64(), name),
			"The management API cannot delete a version: Terraform forgets it; it is deleted with its UFOP (destroying the qufop_ufop, or qufop unreg).")
	}
}

func (r *versionResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	name, num, ok := strings.Cut(req.ID, "/")
	n, err := strconv.Atoi(num)
	if !ok || err != nil || n < 1 || checkName(name) != nil {
		resp.Diagnostics.AddError("Bad import ID", fmt.Sprintf("%q: import a version as <ufop>/<version>, e.g. my-ufop/3", req.ID))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("ufop"), name)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("version"), int64(n))...)
}
