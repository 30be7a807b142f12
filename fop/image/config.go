package image

import (
	"errors"
	"fmt"
)

// Config holds the limits and defaults of the image commands. The defaults
// are Qiniu's published limits for synchronous processing (qiniu-compat.md
// §5).
type Config struct {
	// MaxSrcBytes is the largest accepted input, in bytes.
	MaxSrcBytes int64
	// MaxSrcSide is the largest accepted input width or height (of one
	// frame), in pixels.
	MaxSrcSide int
	// MaxSrcPixels is the largest accepted input area (of one frame).
	MaxSrcPixels int
	// MaxOutSide is the largest output width or height.
	MaxOutSide int
	// MaxOutPixels is the largest output area (of one frame).
	MaxOutPixels int
	// MaxGIFFrames is the most frames an animated input may have.
	MaxGIFFrames int
	// DefaultQuality is the JPEG/WebP quality when the command gives none.
	DefaultQuality int
	// WholeImageBudget is how many bytes of decoded images the
	// whole-image operations (rotate, auto-orient of a turned image) may
	// hold at once on this node (budget.go).
	WholeImageBudget int64
	// Objects reads the stored objects a command names (watermark/1's
	// image); nil: such commands answer 400.
	Objects Objects
}

// NewDefaultConfig returns Qiniu's synchronous limits.
func NewDefaultConfig() Config {
	return Config{
		MaxSrcBytes:    20 << 20,
		MaxSrcSide:     30000,
		MaxSrcPixels:   150_000_000,
		MaxOutSide:     9999,
		MaxOutPixels:   24_999_999,
		MaxGIFFrames:   200,
		DefaultQuality: 75,
		// A 150 MP RGB source (Qiniu's pixel limit) fits alone; on the
		// 2-core reference machine the gateway then peaks under 1 GB.
		WholeImageBudget: 1 << 30, // the largest image the pixel limit admits fits alone: 150 MP x 3 bands x 2 copies
	}
}

// Validate reports every field out of range.
func (c *Config) Validate() error {
	var es []error
	pos := func(name string, v int) {
		if v <= 0 {
			es = append(es, fmt.Errorf("image: %s must be positive, got %d", name, v))
		}
	}
	if c.MaxSrcBytes <= 0 {
		es = append(es, fmt.Errorf("image: MaxSrcBytes must be positive, got %d", c.MaxSrcBytes))
	}
	pos("MaxSrcSide", c.MaxSrcSide)
	pos("MaxSrcPixels", c.MaxSrcPixels)
	pos("MaxOutSide", c.MaxOutSide)
	pos("MaxOutPixels", c.MaxOutPixels)
	pos("MaxGIFFrames", c.MaxGIFFrames)
	if c.WholeImageBudget <= 0 {
		es = append(es, fmt.Errorf("image: WholeImageBudget must be positive, got %d", c.WholeImageBudget))
	}
	if c.DefaultQuality < 1 || c.DefaultQuality > 100 {
		es = append(es, fmt.Errorf("image: DefaultQuality must be in 1..100, got %d", c.DefaultQuality))
	}
	if c.MaxOutSide > 10_000_000 || c.MaxSrcSide > 10_000_000 {
		es = append(es, errors.New("image: sides above 10000000 px are not supported by libvips"))
	}
	return errors.Join(es...)
}
