package ufop

import (
	"fmt"
	"regexp"
	"strconv"
)

// Flavor is an instance size, named as Qiniu names them: C<cores>M<GiB>
// (C1M1, C2M4, ...). It becomes Docker's --cpus/--memory on the local
// orchestrator and Nomad's resources on a cluster.
type Flavor struct {
	Name     string
	CPUs     int // cores
	MemoryMB int
}

// CPUMHz is the Nomad cpu share of the flavor, counting a core as 1000 MHz.
func (f Flavor) CPUMHz() int { return f.CPUs * 1000 }

var flavorName = regexp.MustCompile(`^C([0-9]{1,2})M([0-9]{1,3})$`)

// Bounds of the flavors accepted.
const (
	MaxFlavorCPUs  = 16
	MaxFlavorMemGB = 64
)

// ParseFlavor parses a flavor name; "default" is DefaultFlavor.
func ParseFlavor(name string) (Flavor, error) {
	if name == "default" {
		name = DefaultFlavor
	}
	m := flavorName.FindStringSubmatch(name)
	if m == nil {
		return Flavor{}, fmt.Errorf("want a flavor such as C1M1 or C2M4 (C<cores>M<GiB>), got %q", name)
	}
	cpus, _ := strconv.Atoi(m[1])
	mem, _ := strconv.Atoi(m[2])
	if cpus < 1 || cpus > MaxFlavorCPUs || mem < 1 || mem > MaxFlavorMemGB {
		return Flavor{}, fmt.Errorf("flavor %s out of range: 1..%d cores, 1..%d GiB", name, MaxFlavorCPUs, MaxFlavorMemGB)
	}
	return Flavor{Name: name, CPUs: cpus, MemoryMB: mem * 1024}, nil
}
