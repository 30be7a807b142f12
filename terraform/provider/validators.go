package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/qufop/qufop/ufop"
)

// The validators run at plan (and validate) on known values; each error is
// one line that says what to write instead.

// nameValidator is the platform's own check of a UFOP name (ufop.CheckName).
type nameValidator struct{}

func (nameValidator) Description(context.Context) string {
	return "3-50 of [a-z0-9-], not starting or ending with '-', not a built-in command"
}
func (v nameValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }
func (nameValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if err := ufop.CheckName(req.ConfigValue.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Bad UFOP name", err.Error()+" (names are global across users: use a prefix)")
	}
}

// modeValidator takes the access modes as the API returns them.
type modeValidator struct{}

func (modeValidator) Description(context.Context) string { return `"private" (owner only) or "public"` }
func (v modeValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}
func (modeValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	switch s := req.ConfigValue.ValueString(); s {
	case "private", "public":
	case "2", "1":
		resp.Diagnostics.AddAttributeError(req.Path, "Bad access mode",
			fmt.Sprintf("mode %q is the CLI's number: write %q", s, map[string]string{"2": "private", "1": "public"}[s]))
	default:
		resp.Diagnostics.AddAttributeError(req.Path, "Bad access mode", fmt.Sprintf(`mode must be "private" or "public", got %q`, s))
	}
}

// nonEmpty refuses "" (a null value is the attribute's own business).
type nonEmpty struct{ what string }

func (v nonEmpty) Description(context.Context) string { return v.what + " must not be empty" }
func (v nonEmpty) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}
func (v nonEmpty) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if !req.ConfigValue.IsNull() && !req.ConfigValue.IsUnknown() && req.ConfigValue.ValueString() == "" {
		resp.Diagnostics.AddAttributeError(req.Path, "Empty "+v.what, v.what+" must not be empty")
	}
}

// durationValidator wants a Go duration ("30s", "2m") of at least min.
type durationValidator struct{ min time.Duration }

func (v durationValidator) Description(context.Context) string {
	return fmt.Sprintf("a duration such as \"30s\" or \"2m\", at least %s", v.min)
}
func (v durationValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}
func (v durationValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	s := req.ConfigValue.ValueString()
	d, err := time.ParseDuration(s)
	if err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Bad duration", fmt.Sprintf("%q is not a duration: write one such as \"30s\" or \"2m\"", s))
		return
	}
	if d < v.min {
		resp.Diagnostics.AddAttributeError(req.Path, "Duration too short", fmt.Sprintf("%q is under %s", s, v.min))
	}
}

// atLeast wants an integer >= min.
type atLeast struct {
	min  int64
	what string
}

func (v atLeast) Description(context.Context) string {
	return fmt.Sprintf("%s: at least %d", v.what, v.min)
}
func (v atLeast) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}
func (v atLeast) ValidateInt64(_ context.Context, req validator.Int64Request, resp *validator.Int64Response) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if n := req.ConfigValue.ValueInt64(); n < v.min {
		resp.Diagnostics.AddAttributeError(req.Path, "Value too small", fmt.Sprintf("%s must be at least %d, got %d", v.what, v.min, n))
	}
}

// positive wants a number > 0.
type positive struct{ what string }

func (v positive) Description(context.Context) string { return v.what + ": more than 0" }
func (v positive) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}
func (v positive) ValidateFloat64(_ context.Context, req validator.Float64Request, resp *validator.Float64Response) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if f := req.ConfigValue.ValueFloat64(); f <= 0 {
		resp.Diagnostics.AddAttributeError(req.Path, "Value too small", fmt.Sprintf("%s must be more than 0, got %g", v.what, f))
	}
}

func checkName(name string) error { return ufop.CheckName(name) }
