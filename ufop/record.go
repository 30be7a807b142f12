package ufop

import (
	"fmt"
	"regexp"
	"time"
)

// Mode is who may call a UFOP.
type Mode string

const (
	// Private UFOPs serve only their owner (Qiniu's mode 2, the default).
	Private Mode = "private"
	// Public UFOPs serve anyone (Qiniu's mode 1).
	Public Mode = "public"
)

// ParseMode accepts the names and qufopctl's numbers (1 public, 2 private).
func ParseMode(s string) (Mode, error) {
	switch s {
	case "private", "2", "":
		return Private, nil
	case "public", "1":
		return Public, nil
	}
	return "", fmt.Errorf("access mode must be private (2) or public (1), got %q", s)
}

// VersionState is the build state of a version, with Qiniu's strings.
type VersionState string

const (
	Building     VersionState = "building"
	BuildSuccess VersionState = "build success"
	BuildFailed  VersionState = "build failed"
)

// Version is one uploaded build of a UFOP.
type Version struct {
	N         int          `json:"version"`
	State     VersionState `json:"state"`
	Desc      string       `json:"description,omitempty"`
	CreatedAt time.Time    `json:"createAt"`
	// Image is the pushed image (Docker builds) and Dir the unpacked app
	// (process builds); one of them is set once the build succeeded.
	Image string `json:"image,omitempty"`
	Dir   string `json:"dir,omitempty"`
	Spec  *Spec  `json:"spec,omitempty"`
	Error string `json:"error,omitempty"`
}

// Record is everything the platform keeps about one UFOP.
type Record struct {
	Name      string    `json:"name"`
	Owner     string    `json:"owner"`
	Mode      Mode      `json:"mode"`
	Desc      string    `json:"description"`
	CreatedAt time.Time `json:"createAt"`
	Versions  []Version `json:"versions"`
	// Current is the version chosen with chver (0: none); Deployed is the
	// version the instances run (changed by resize from zero and upgrade).
	Current  int `json:"current"`
	Deployed int `json:"deployed"`
	// Desired is the instance count asked for with resize.
	Desired      int `json:"desired"`
	MaxInstances int `json:"maxInstances"`
	// Scale is the scaler's policy; nil: counts change only by resize.
	Scale *ScalePolicy `json:"scale,omitempty"`
	// ScaleHistory is the last changes of Desired, oldest first.
	ScaleHistory []ScaleEvent `json:"scaleHistory,omitempty"`
	// Op is the last operation on the instances (see Operation); nil:
	// none since the record was made.
	Op *Operation `json:"operation,omitempty"`
	// (Records written before the flavor came from ufop.yaml also hold
	// "flavor": "default"; it is ignored.)
}

// Version returns version n, or nil.
func (r *Record) Version(n int) *Version {
	for i := range r.Versions {
		if r.Versions[i].N == n {
			return &r.Versions[i]
		}
	}
	return nil
}

// NextVersion is the number the next build gets.
func (r *Record) NextVersion() int {
	n := 0
	for _, v := range r.Versions {
		n = max(n, v.N)
	}
	return n + 1
}

// DefaultMaxInstances is Qiniu's sample "Max instanceNum".
const DefaultMaxInstances = 5

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,48}[a-z0-9]$`)

// reservedNames collide with built-in commands or platform routes.
var reservedNames = map[string]bool{
	"imageview2": true, "imagemogr2": true, "imageinfo": true, "exif": true, "imageave": true,
	"avinfo": true, "avthumb": true, "vframe": true, "watermark": true, "saveas": true,
	"pfop": true, "health": true, "metrics": true, "v1": true,
}

// CheckName validates a UFOP name: 3 to 50 lower-case letters, digits and
// '-', not starting or ending with '-', not a built-in command. Names are
// global across users (as on Qiniu), so users should prefix them.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("bad ufop name %q: want 3-50 of [a-z0-9-], not starting or ending with '-'", name)
	}
	if reservedNames[name] {
		return fmt.Errorf("ufop name %q is reserved", name)
	}
	return nil
}
