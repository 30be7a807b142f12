package builder

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/qufop/qufop/ufop"
)

// Config is the builder's configuration.
type Config struct {
	// Registry is the registry images are tagged for and pushed to
	// ("127.0.0.1:5000"). Empty: images are tagged <owner>/<name>:v<N> and
	// not pushed.
	Registry string
	// BaseImages maps the names ufop.yaml's image may use ("ubuntu") to
	// image references ("ubuntu:22.04").
	BaseImages map[string]string
	// MaxConcurrent bounds the builds that run at once.
	MaxConcurrent int
	// Timeout bounds one build (unpack, build container, commit, push).
	Timeout time.Duration
	// MaxTarBytes caps the unpacked size of a tarball.
	MaxTarBytes int64
	// MaxUploadBytes caps the tarball as uploaded (compressed or not).
	MaxUploadBytes int64
	// MaxFiles caps the entries of a tarball.
	MaxFiles int
	// Dir holds work folders and build logs.
	Dir string
	// User is the numeric uid:gid the program runs as.
	User string
	// Namespace, when set, is the first path component of every image
	// repository: <registry>/<namespace>/<owner>/<name>:v<N>. Two
	// platforms that share a Docker daemon and a registry set different
	// namespaces so that they never build, push or remove each other's
	// tags.
	Namespace string
	// Labels are put on every built image, besides qufop.ufop, qufop.owner
	// and qufop.version (which they may not set); the platform passes
	// qufop.platform=<id>, which tells whose image it is.
	Labels map[string]string
}

// Defaults.
const (
	DefaultRegistry       = "127.0.0.1:5000"
	DefaultMaxConcurrent  = 2
	DefaultTimeout        = 10 * time.Minute
	DefaultMaxTarBytes    = 512 << 20
	DefaultMaxUploadBytes = 256 << 20
	DefaultMaxFiles       = 10000
	DefaultUser           = "10001:10001"
	// Port is where a UFOP instance listens inside its container.
	Port = 9100
)

// DefaultBaseImages are the configured base-image names.
func DefaultBaseImages() map[string]string {
	return map[string]string{
		"ubuntu":  "ubuntu:22.04",
		"busybox": "local/busybox:1",
	}
}

// NewDefaultConfig returns the defaults, with Dir under the system's
// temporary folder.
func NewDefaultConfig() Config {
	return Config{
		Registry:       DefaultRegistry,
		BaseImages:     DefaultBaseImages(),
		MaxConcurrent:  DefaultMaxConcurrent,
		Timeout:        DefaultTimeout,
		MaxTarBytes:    DefaultMaxTarBytes,
		MaxUploadBytes: DefaultMaxUploadBytes,
		MaxFiles:       DefaultMaxFiles,
		Dir:            filepath.Join(os.TempDir(), "qufop-builder"),
		User:           DefaultUser,
	}
}

var (
	userRe     = regexp.MustCompile(`^[0-9]+:[0-9]+$`)
	registryRe = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]+)?$`)
)

// Validate reports the first bad setting.
func (c Config) Validate() error {
	switch {
	case c.Registry != "" && !registryRe.MatchString(c.Registry):
		return fmt.Errorf("builder: registry %q is not host[:port]", c.Registry)
	case c.MaxConcurrent < 1:
		return fmt.Errorf("builder: max concurrent builds must be at least 1, got %d", c.MaxConcurrent)
	case c.Timeout <= 0:
		return fmt.Errorf("builder: build timeout must be positive, got %s", c.Timeout)
	case c.MaxTarBytes <= 0:
		return fmt.Errorf("builder: max tarball size must be positive, got %d", c.MaxTarBytes)
	case c.MaxUploadBytes <= 0:
		return fmt.Errorf("builder: max upload size must be positive, got %d", c.MaxUploadBytes)
	case c.MaxFiles < 1:
		return fmt.Errorf("builder: max files must be at least 1, got %d", c.MaxFiles)
	case c.Dir == "":
		return fmt.Errorf("builder: dir is required")
	case !userRe.MatchString(c.User):
		return fmt.Errorf("builder: user must be a numeric uid:gid, got %q", c.User)
	case c.User == "0:0" || c.User[:2] == "0:":
		return fmt.Errorf("builder: user %q is root; the program must run as a non-root user", c.User)
	case c.Namespace != "" && (len(c.Namespace) > 64 || !nameRe.MatchString(c.Namespace)):
		return fmt.Errorf("builder: bad namespace %q: want lower-case letters, digits and . _ - inside, at most 64", c.Namespace)
	}
	for k := range c.Labels {
		if k == "" || strings.ContainsAny(k, "= \t\r\n") {
			return fmt.Errorf("builder: bad image label %q", k)
		}
		if _, ok := ufopLabels[k]; ok {
			return fmt.Errorf("builder: image label %q is set by the builder", k)
		}
	}
	for name, ref := range c.BaseImages {
		if name == "" || ref == "" {
			return fmt.Errorf("builder: base image %q maps to %q", name, ref)
		}
	}
	return nil
}

// Limits returns the tarball limits of c.
func (c Config) Limits() Limits {
	return Limits{MaxBytes: c.MaxTarBytes, MaxUploadBytes: c.MaxUploadBytes, MaxFiles: c.MaxFiles}
}

// ufopLabels are the labels the builder itself puts on an image.
var ufopLabels = map[string]struct{}{"qufop.ufop": {}, "qufop.owner": {}, "qufop.version": {}}

// Repository returns the image repository of a UFOP:
// [<registry>/][<namespace>/]<owner>/<name>.
func (c Config) Repository(owner, name string) string {
	repo := owner + "/" + name
	if c.Namespace != "" {
		repo = c.Namespace + "/" + repo
	}
	if c.Registry != "" {
		repo = c.Registry + "/" + repo
	}
	return repo
}

// Tag returns the image reference of a UFOP version:
// [<registry>/][<namespace>/]<owner>/<name>:v<N>.
func (c Config) Tag(owner, name string, version int) string {
	return fmt.Sprintf("%s:v%d", c.Repository(owner, name), version)
}

// ParseTag is the inverse of Tag: the owner, name and version of ref when
// ref is an image reference this configuration makes.
func (c Config) ParseTag(ref string) (owner, name string, version int, ok bool) {
	prefix := c.Repository("", "")
	prefix = prefix[:len(prefix)-1] // without the "/" between owner and name
	rest, found := strings.CutPrefix(ref, prefix)
	if !found {
		return "", "", 0, false
	}
	repo, tag, found := strings.Cut(rest, ":v")
	if !found {
		return "", "", 0, false
	}
	owner, name, found = strings.Cut(repo, "/")
	if !found || checkName("owner", owner) != nil || checkName("ufop name", name) != nil {
		return "", "", 0, false
	}
	v, err := strconv.Atoi(tag)
	if err != nil || v < 1 || c.Tag(owner, name, v) != ref {
		return "", "", 0, false
	}
	return owner, name, v, true
}

// ResolveBase maps ufop.yaml's image to an image reference: a configured
// name through BaseImages; "<ufop>.v<N>" to Tag(owner, ufop, N)
// (<registry>/[<namespace>/]<owner>/<ufop>:v<N>);
// anything else as written (it must be held by the daemon or the registry).
func (c Config) ResolveBase(image, owner string) (string, error) {
	if image == "" {
		return "", fmt.Errorf("builder: no base image")
	}
	if ref, ok := c.BaseImages[image]; ok {
		return ref, nil
	}
	if name, v, ok := ufop.ParseBase(image); ok {
		if err := checkName("owner", owner); err != nil {
			return "", err
		}
		return c.Tag(owner, name, v), nil
	}
	return image, nil
}
