package jobspecs_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// keyVariable matches a job variable that would carry a key: job variables
// are part of the job, readable by anyone who can read it.
var keyVariable = regexp.MustCompile(`(?m)^variable\s+"[^"]*(secret|access_key|token|password)[^"]*"`)

// TestJobspecsKeepSecretsOut: no platform jobspec passes a key on a command
// line or as a job variable; the builder takes its admin keys from a Nomad
// Variable rendered into its environment by a template.
func TestJobspecsKeepSecretsOut(t *testing.T) {
	files, err := filepath.Glob("*.nomad.hcl")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		src := string(b)
		for _, flag := range []string{"--secret-key", "--access-key", "-token"} {
			assert.NotContains(t, src, `"`+flag+`"`, "%s passes %s on a command line", f, flag)
		}
		assert.Empty(t, keyVariable.FindAllString(src, -1), "%s declares a job variable for a key", f)
	}
	b, err := os.ReadFile("builder.nomad.hcl")
	require.NoError(t, err)
	src := string(b)
	for _, want := range []string{
		`nomadVar .Path`, `nomadVarList "nomad/jobs/qufop-builder"`,
		"QUFOP_ACCESS_KEY={{ .access_key }}", "QUFOP_SECRET_KEY={{ .secret_key }}",
		`destination = "secrets/`, "env         = true",
	} {
		assert.Contains(t, src, want, "builder.nomad.hcl")
	}
}

// TestJobspecsRenderWithoutSecrets renders every jobspec with `nomad job
// run -output` (the JSON Nomad would be sent; skipped without nomad on
// PATH) and checks the job itself: no key in any task's args, env or meta,
// and the builder's keys template renders into the environment from
// secrets/.
func TestJobspecsRenderWithoutSecrets(t *testing.T) {
	nomadBin, err := exec.LookPath("nomad")
	if err != nil {
		t.Skip("skipping: needs `nomad` on PATH (the text checks of TestJobspecsKeepSecretsOut still run)")
	}
	files, err := filepath.Glob("*.nomad.hcl")
	require.NoError(t, err)
	for _, f := range files {
		cmd := exec.Command(nomadBin, "job", "run", "-output", f)
		cmd.Env = append(os.Environ(), "NOMAD_ADDR=http://127.0.0.1:1") // no agent
		out, err := cmd.Output()
		require.NoError(t, err, "nomad job run -output %s", f)
		var doc struct {
			Job struct {
				TaskGroups []struct {
					Tasks []struct {
						Name      string
						Config    map[string]any
						Env       map[string]string
						Meta      map[string]string
						Templates []struct {
							DestPath, EmbeddedTmpl, Perms string
							Envvars                       bool
						}
					}
				}
			}
		}
		require.NoError(t, json.Unmarshal(out, &doc), f)
		for _, g := range doc.Job.TaskGroups {
			for _, task := range g.Tasks {
				args, _ := json.Marshal(task.Config["args"])
				assert.NotContains(t, string(args), "secret", "%s: task %s args", f, task.Name)
				assert.NotContains(t, string(args), "--access-key", "%s: task %s args", f, task.Name)
				for k := range task.Env {
					assert.False(t, strings.Contains(k, "SECRET") || strings.Contains(k, "TOKEN"), "%s: task %s env %s", f, task.Name, k)
				}
				if f != "builder.nomad.hcl" {
					continue
				}
				var found bool
				for _, tpl := range task.Templates {
					if strings.Contains(tpl.EmbeddedTmpl, "QUFOP_SECRET_KEY") {
						found = true
						assert.True(t, tpl.Envvars, "the keys template renders into the environment")
						assert.True(t, strings.HasPrefix(tpl.DestPath, "secrets/"), tpl.DestPath)
						assert.Equal(t, "0600", tpl.Perms)
					}
				}
				assert.True(t, found, "builder.nomad.hcl: no template renders QUFOP_SECRET_KEY")
			}
		}
	}
}
