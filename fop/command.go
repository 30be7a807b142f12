package fop

import "context"

// Blob is the data flowing between steps of a chain.
type Blob struct {
	// Data is read-only: a source may be shared with other requests (the
	// gateway's cache of small objects). Steps return new slices.
	Data []byte
	// MIME is the content type of Data ("image/jpeg").
	MIME string
	// NoStore marks results that must not be cached (info commands send
	// Cache-Control: no-store).
	NoStore bool
	// Derived is false for the stored object and true once any step has run;
	// some commands (exif) refuse derived input.
	Derived bool
	// Bucket and Key name the stored object the chain started from; they
	// travel along the chain (UFOPs receive them).
	Bucket, Key string
	// Version is the version of what made Data, when the step knows it
	// better than its Versioner did before it ran (a UFOP step served by a
	// canary of a newer version); "" otherwise.
	Version string
}

type reqIDKey struct{}

// WithReqID returns ctx carrying the request id, for steps that pass it on
// (UFOP calls send it as X-Reqid).
func WithReqID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, reqIDKey{}, id)
}

// ReqID returns the request id carried by ctx, or "".
func ReqID(ctx context.Context) string {
	id, _ := ctx.Value(reqIDKey{}).(string)
	return id
}

// Processor runs one built-in command on its input. Implementations check
// their parameters before doing any work and return errors from package errs
// (400 for bad parameters, 599 for processing failures).
type Processor interface {
	Process(ctx context.Context, cmd Cmd, in Blob) (Blob, error)
}

// ProcessorFunc adapts a function to Processor.
type ProcessorFunc func(ctx context.Context, cmd Cmd, in Blob) (Blob, error)

// Process calls f.
func (f ProcessorFunc) Process(ctx context.Context, cmd Cmd, in Blob) (Blob, error) {
	return f(ctx, cmd, in)
}

// Validator is implemented by processors that can check a command's
// parameters without input, so that a bad chain is refused (400) before the
// source is fetched or any step runs.
type Validator interface {
	Validate(cmd Cmd) error
}

// Versioner is implemented by processors whose output for the same input
// and command can change: between releases of the built-in commands (a new
// encoder, a bug fix) or between versions of a UFOP. The gateway puts the
// versions of a chain's steps in its result's ETag, so a client or CDN
// holding the old output revalidates to the new one instead of getting 304.
type Versioner interface {
	Version() string
}

// Registry maps command names to the processors that run them.
type Registry map[string]Processor
