package image

import "github.com/qufop/qufop/fop/image/vips"

// outputVersion is the version of the image commands' output. Bump it with
// any change that makes a command produce different bytes for the same
// input and parameters (a new default quality, a metadata rule, a resampler):
// it is part of every result's ETag, so clients and CDNs holding a result of
// the old output revalidate to the new one instead of getting 304s.
const outputVersion = "2"

// Version is the version of the built-in image commands' output: ours and
// that of the libvips the gateway links (a libvips upgrade changes encoders
// too). It implements fop.Versioner.
func (x *Image) Version() string { return "qufop-image/" + outputVersion + "+vips/" + vips.Version() }

// Each command reports its Image's version.
func (p *ImageView2) Version() string { return p.x.Version() }
func (p *ImageMogr2) Version() string { return p.x.Version() }
func (p *ImageInfo) Version() string  { return p.x.Version() }
func (p *Exif) Version() string       { return p.x.Version() }
func (p *ImageAve) Version() string   { return p.x.Version() }
