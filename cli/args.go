package cli

import "strings"

// qufopctlLongFlags are qufopctl's single-dash long flags, which pflag would
// read as bundles of shorthands ("-index" as -i -n -d -e -x).
var qufopctlLongFlags = map[string]bool{
	"index": true, "range": true, "num": true, "mode": true, "desc": true, "dir": true,
}

// NormalizeArgs rewrites qufopctl's single-dash long flags (-index 2,
// -range=1:3, -num, -mode, -desc, -dir) to their double-dash form and leaves
// every other argument alone. The value of a description flag is never
// rewritten, nor is anything after "--".
func NormalizeArgs(args []string) []string {
	out := make([]string, 0, len(args))
	skip := false
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if skip {
			skip = false
			out = append(out, a)
			continue
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name, _, hasValue := strings.Cut(a[1:], "=")
			if qufopctlLongFlags[name] {
				a = "-" + a
				skip = name == "desc" && !hasValue
			}
		}
		if a == "-d" || a == "--desc" {
			skip = true
		}
		out = append(out, a)
	}
	return out
}
